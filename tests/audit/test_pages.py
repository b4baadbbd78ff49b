"""The auditor's pages, the trail export, the subject-access zip, and the read-only admin."""

from __future__ import annotations

import csv
import datetime
import io
import json
import zipfile

import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent, ModelChange
from audit.services import audit_record
from students import services
from tests.students.factories import district_admin

pytestmark = pytest.mark.django_db


def body(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content)


def test_disclosure_page_answers_who_has_seen_the_record(client, world, other_world) -> None:
    child = world.students[0]
    client.force_login(world.teacher)
    assert client.get(reverse("students:student_detail", args=[child.pk])).status_code == 200
    client.force_login(world.auditor)
    page = client.get(reverse("audit:student_disclosures", args=[child.pk]))
    assert page.status_code == 200
    [seen] = list(page.context["page"])
    assert seen.action == "view" and seen.actor == world.teacher
    assert b"teacher-north" in page.content
    # The record's changes are on the same page.
    changes = client.get(reverse("audit:student_disclosures", args=[child.pk]) + "?show=changes")
    assert all(c.student_id == child.pk for c in changes.context["page"])
    # Another school's child is not found; a registrar may not read the trail.
    outsider = other_world.students[0]
    assert client.get(reverse("audit:student_disclosures", args=[outsider.pk])).status_code == 404
    client.force_login(world.registrar)
    assert client.get(reverse("audit:student_disclosures", args=[child.pk])).status_code == 403
    assert client.get(reverse("audit:trail")).status_code == 403


def _events(world, n: int, action: str = "view") -> None:  # type: ignore[no-untyped-def]
    for _ in range(n):
        audit_record(actor=world.teacher, action=action, target=world.students[0])


def test_list_pages_query_counts_do_not_grow_with_rows(client, world) -> None:
    client.force_login(world.auditor)
    child = world.students[0]
    urls = [
        reverse("audit:trail"),
        reverse("audit:student_disclosures", args=[child.pk]),
        reverse("audit:student_disclosures", args=[child.pk]) + "?show=changes",
    ]

    def counts() -> list[int]:
        found = []
        for url in urls:
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url).status_code == 200
            found.append(len(ctx.captured_queries))
        return found

    _events(world, 3)
    services.student_update(student=child, actor=world.registrar, first_name="One")
    few = counts()
    _events(world, 40)
    for n in range(10):
        services.student_update(student=child, actor=world.registrar, first_name=f"N{n}")
    assert counts() == few


def test_trail_filters_and_school_isolation(client, world, other_world) -> None:
    _events(world, 2)
    audit_record(actor=world.registrar, action="export", target=world.school)
    _events(other_world, 5)  # another school: never shown
    client.force_login(world.auditor)
    everything = client.get(reverse("audit:trail")).context["page"].paginator.count
    mine = AuditEvent.objects.filter(school_id=world.school.pk).count()
    assert everything == mine
    assert not AuditEvent.objects.filter(school_id=world.school.pk, actor=other_world.teacher)

    def count(**query: str) -> int:
        response = client.get(reverse("audit:trail"), query)
        assert response.status_code == 200
        return response.context["page"].paginator.count

    assert count(actor="teacher-north", action="view") == 2
    assert count(action="export") == 1
    assert count(student=world.students[0].student_number, action="view") == 2
    # Another school's student number matches nothing here.
    assert count(student=other_world.students[0].student_number) == 0
    today = datetime.date.today()
    assert count(action="view", date_from=str(today), date_to=str(today)) == 2
    assert count(action="view", date_to=str(today - datetime.timedelta(days=1))) == 0


def test_trail_csv_export_is_streamed_filtered_and_audited(client, world, other_world) -> None:
    _events(world, 3)
    _events(other_world, 2)
    client.force_login(world.admin)
    response = client.get(reverse("audit:trail_export"), {"action": "view"})
    assert response.status_code == 200 and response.streaming
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert len(rows) == 3
    assert {r["who"] for r in rows} == {"teacher-north"}
    assert {r["student id"] for r in rows} == {str(world.students[0].pk)}
    export = AuditEvent.objects.get(action="export", changes__what="audit.csv")
    assert export.actor == world.admin and export.changes["filters"] == {"action": "view"}
    assert export.ip_address == "127.0.0.1" and export.school_id == world.school.pk


def test_subject_access_zip_holds_the_whole_record(client, world, other_world, today) -> None:
    child = world.students[0]
    services.attendance_record_bulk(
        section=world.section,
        date=today,
        marks={s.pk: services.AttendanceMark(status="present") for s in world.students},
        actor=world.teacher,
    )
    services.grade_record_bulk(
        assessment=world.assessment,
        entries={child.pk: services.GradeEntry(score=world.assessment.max_score)},
        actor=world.teacher,
    )
    client.force_login(world.auditor)
    client.get(reverse("students:student_detail", args=[child.pk]))

    client.force_login(world.admin)
    response = client.get(reverse("audit:subject_access_export", args=[child.pk]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(body(response)))
    names = set(archive.namelist())
    assert {
        "README.txt",
        "student.json",
        "guardians.csv",
        "students_enrollment.csv",
        "students_attendancerecord.csv",
        "students_grade.csv",
        "students_assessment.csv",
        "students_studentguardian.csv",
        "files_document.csv",
        "files_documentversion.csv",
        "disclosures.csv",
        "record_changes.csv",
    } <= names

    def table(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(archive.read(name).decode())))

    record = json.loads(archive.read("student.json"))
    assert record["id"] == child.pk and record["student_number"] == child.student_number
    [guardian] = table("guardians.csv")
    assert int(guardian["id"]) == child.guardian_links.get().guardian_id
    [attendance] = table("students_attendancerecord.csv")
    assert attendance["student_id"] == str(child.pk) and attendance["status"] == "present"
    [grade] = table("students_grade.csv")
    assert grade["assessment_id"] == str(world.assessment.pk)
    assert [a["name"] for a in table("students_assessment.csv")] == ["Fractions quiz"]
    [enrollment] = table("students_enrollment.csv")
    assert enrollment["section_id"] == str(world.section.pk)
    assert table("files_document.csv") == []
    disclosures = table("disclosures.csv")
    assert ("auditor-north", "view") in {(d["who"], d["action"]) for d in disclosures}
    assert ("school_admin-north", "subject_access_export") in {
        (d["who"], d["action"]) for d in disclosures
    }
    changes = table("record_changes.csv")
    assert {"students.attendancerecord", "students.grade"} <= {c["record type"] for c in changes}
    # Nothing about the other children leaks in.
    others = {str(s.pk) for s in world.students[1:]}
    assert not others & {row["student_id"] for row in table("students_attendancerecord.csv")}
    readme = archive.read("README.txt").decode()
    assert child.student_number in readme and "disclosures.csv" in readme
    # The export itself is in the trail.
    event = AuditEvent.objects.get(action="subject_access_export")
    assert event.actor == world.admin and event.student_id == child.pk


def test_subject_access_only_for_the_students_school_admins(
    client, world, other_world, district_user
) -> None:
    url = reverse("audit:subject_access_export", args=[world.students[0].pk])
    for user in (world.auditor, world.registrar, world.teacher):
        client.force_login(user)
        assert client.get(url).status_code == 403
    client.force_login(other_world.admin)
    assert client.get(url).status_code == 404
    assert not AuditEvent.objects.filter(action="subject_access_export").exists()
    client.force_login(district_user)
    assert client.get(url).status_code in (200, 404)  # 404 when working in another school


def test_admin_trail_is_read_only_even_for_a_superuser(client, world, other_world, rf) -> None:
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.org", "x" * 20)
    _events(world, 1)
    _events(other_world, 1)
    client.force_login(root)
    for model in (AuditEvent, ModelChange):
        model_admin = site._registry[model]
        request = rf.get("/")
        request.user = root
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request, None)
        assert not model_admin.has_delete_permission(request, None)
        assert model_admin.get_actions(request) == {}
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        assert client.get(reverse(f"{prefix}_changelist")).status_code == 200
        assert client.get(reverse(f"{prefix}_add")).status_code == 403
        entry = model.objects.first()
        assert entry is not None
        delete = reverse(f"{prefix}_delete", args=[entry.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
        assert model.objects.filter(pk=entry.pk).exists()
    # A school administrator's console shows their own school's entries only.
    client.force_login(world.admin)
    listing = client.get(reverse("admin:audit_auditevent_changelist"))
    assert listing.status_code == 200, listing
    shown = listing.context["cl"].queryset
    assert shown.exists() and set(shown.values_list("school_id", flat=True)) == {world.school.pk}
    changes = client.get(reverse("admin:audit_modelchange_changelist"))
    assert changes.status_code == 200
    assert set(changes.context["cl"].queryset.values_list("school_id", flat=True)) == {
        world.school.pk
    }
    client.force_login(district_admin("district-root"))
    everything = client.get(reverse("admin:audit_modelchange_changelist"))
    assert everything.context["cl"].queryset.count() == ModelChange.objects.count()


def test_a_class_roster_export_is_a_disclosure_of_each_child(client, world) -> None:
    client.force_login(world.registrar)
    url = reverse("students:roster_export", kwargs={"pk": world.section.pk, "fmt": "csv"})
    assert client.get(url).status_code == 200
    client.force_login(world.auditor)
    for child in world.students:
        page = client.get(reverse("audit:student_disclosures", args=[child.pk]))
        [event] = list(page.context["page"])
        assert event.action == "export" and event.actor == world.registrar
        assert event.changes["what"] == "roster.csv"
    outsider_page = client.get(reverse("audit:student_disclosures", args=[world.outsider.pk]))
    assert list(outsider_page.context["page"]) == []  # not in that class


def test_a_cached_roster_pdf_discloses_the_children_it_prints_in_one_insert(client, world) -> None:
    """The PDF comes from the cache with the children it prints; its disclosure entries (the
    class's and each child's) go in one INSERT, without reading the enrolments again."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(world.registrar)
    url = reverse("students:roster_export", kwargs={"pk": world.section.pk, "fmt": "pdf"})
    b"".join(client.get(url).streaming_content)  # builds and caches it
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
        assert response.status_code == 200
        b"".join(response.streaming_content)
    sql = [q["sql"] for q in ctx.captured_queries]
    assert len([q for q in sql if q.startswith('INSERT INTO "audit_auditevent"')]) == 1, sql
    assert not [q for q in sql if '"students_enrollment"' in q and "audit" not in q], sql
    client.force_login(world.auditor)
    for child in world.students:
        page = client.get(reverse("audit:student_disclosures", args=[child.pk]))
        events = list(page.context["page"])
        assert [e.changes["what"] for e in events] == ["roster.pdf"] * 2
        assert all(e.changes["of_class"] for e in events)
    outsider_page = client.get(reverse("audit:student_disclosures", args=[world.outsider.pk]))
    assert list(outsider_page.context["page"]) == []
    assert (
        AuditEvent.objects.filter(
            action="export", target_type="students.Section", student_id__isnull=True
        ).count()
        == 2
    )  # the class's own event, once per export
