"""What each endpoint reads and writes, through the same services as the pages, with the
audit entries the pages write."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from files.models import Document
from students.models import AttendanceRecord, Enrollment, Grade, Student
from tests.files.factories import make_document, pdf_bytes, upload

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- reads: filtering, search, ordering, cursor pages -------------------------------------------
def test_student_list_filters_searches_orders_and_pages(world, admin_api) -> None:
    url = reverse("api:student-list")
    everyone = {s.pk for s in world.students} | {world.outsider.pk}
    assert set(ids(admin_api.get(url))) == everyone
    assert set(ids(admin_api.get(url, {"section": world.section.pk}))) == {
        s.pk for s in world.students
    }
    target = world.students[1]
    assert ids(admin_api.get(url, {"search": target.student_number})) == [target.pk]
    Student.objects.filter(pk=target.pk).update(status=Student.Status.WITHDRAWN)
    assert ids(admin_api.get(url, {"status": "withdrawn"})) == [target.pk]
    by_number = ids(admin_api.get(url, {"ordering": "-student_number"}))
    numbers = dict(Student.objects.values_list("pk", "student_number"))
    assert [numbers[pk] for pk in by_number] == sorted(numbers[pk] for pk in everyone)[::-1]
    # Cursor pages: two at a time, following `next`, every student exactly once.
    seen: list[int] = []
    page = admin_api.get(url, {"page_size": 2}).json()
    while True:
        seen += [row["id"] for row in page["results"]]
        if not page["next"]:
            break
        assert "cursor=" in page["next"]
        page = admin_api.get(page["next"]).json()
    assert sorted(seen) == sorted(everyone)


def test_attendance_list_filters_by_date_range_and_status(world, admin_api) -> None:
    day = datetime.date(2026, 9, 1)
    for offset, status in enumerate(["present", "absent", "late"]):
        AttendanceRecord.objects.create(
            school=world.school,
            section=world.section,
            student=world.students[offset],
            date=day + datetime.timedelta(days=offset),
            status=status,
        )
    url = reverse("api:attendance-list")
    assert len(ids(admin_api.get(url, {"date_from": "2026-09-02"}))) == 2
    absent = admin_api.get(url, {"status": "absent"}).json()["results"]
    assert [(r["student"], r["date"]) for r in absent] == [(world.students[1].pk, "2026-09-02")]


# --- reads are audited --------------------------------------------------------------------------
def test_reading_a_student_is_audited_like_the_profile_page(world, admin_api) -> None:
    student = world.students[0]
    response = admin_api.get(reverse("api:student-detail", args=[student.pk]))
    assert response.status_code == 200
    assert response.json()["student_number"] == student.student_number
    event = AuditEvent.objects.get(action="view", student_id=student.pk)
    assert event.actor == world.admin and event.school_id == world.school.pk


def test_list_pages_record_which_records_were_disclosed(world, admin_api) -> None:
    shown = ids(admin_api.get(reverse("api:guardian-list")))
    event = AuditEvent.objects.get(action="api_list")
    assert event.changes == {"endpoint": "guardian", "ids": shown}
    assert event.actor == world.admin and event.school_id == world.school.pk


# --- writes through the services ----------------------------------------------------------------
def test_student_create_and_update_go_through_the_services(world, admin_api) -> None:
    response = admin_api.post(
        reverse("api:student-list"),
        {
            "student_number": "NORTH-777",
            "first_name": "Grace",
            "last_name": "Hopper",
            "date_of_birth": "2014-12-09",
            "grade_level": world.level.pk,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    student = Student.objects.get(pk=response.json()["id"])
    assert student.school == world.school
    assert AuditEvent.objects.filter(action="create", student_id=student.pk).exists()
    # The same number twice is refused by the service's full_clean, as a 400.
    again = admin_api.post(
        reverse("api:student-list"),
        {
            "student_number": "NORTH-777",
            "first_name": "X",
            "last_name": "Y",
            "date_of_birth": "2014-12-09",
        },
        format="json",
    )
    assert again.status_code == 400
    patch = admin_api.patch(
        reverse("api:student-detail", args=[student.pk]), {"preferred_name": "Amazing"}
    )
    assert patch.status_code == 200 and patch.json()["full_name"] == "Amazing Hopper"
    update = AuditEvent.objects.get(action="update", student_id=student.pk)
    assert update.changes["preferred_name"] == ["", "Amazing"]


def test_enrolling_moves_the_student_like_the_service_does(world, admin_api) -> None:
    student = world.students[0]
    response = admin_api.post(
        reverse("api:enrollment-list"),
        {"student": student.pk, "section": world.other_section.pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    open_ones = Enrollment.objects.filter(student=student, ended_on__isnull=True)
    assert [e.section_id for e in open_ones] == [world.other_section.pk]


def test_bulk_attendance_records_the_register(world, make_token, api, today) -> None:
    teacher = api(make_token(world.teacher, world.school))
    marks = [
        {"student": s.pk, "status": "absent" if i == 0 else "present"}
        for i, s in enumerate(world.students)
    ]
    response = teacher.post(
        reverse("api:attendance-bulk"),
        {"section": world.section.pk, "date": str(today), "marks": marks},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["recorded"] == 3
    statuses = dict(AttendanceRecord.objects.filter(date=today).values_list("student_id", "status"))
    assert statuses[world.students[0].pk] == "absent"
    assert AuditEvent.objects.filter(action="attendance_take", actor=world.teacher).exists()
    # The teacher's other sections do not exist for them.
    response = teacher.post(
        reverse("api:attendance-bulk"),
        {
            "section": world.other_section.pk,
            "date": str(today),
            "marks": [{"student": world.outsider.pk, "status": "present"}],
        },
        format="json",
    )
    assert response.status_code == 400 and "section" in response.json()
    # A future date is refused by the service.
    future = teacher.post(
        reverse("api:attendance-bulk"),
        {
            "section": world.section.pk,
            "date": str(today + datetime.timedelta(days=2)),
            "marks": marks,
        },
        format="json",
    )
    assert future.status_code == 400


def test_grades_are_read_and_recorded_per_assessment(world, admin_api) -> None:
    url = reverse("api:assessment-grades", args=[world.assessment.pk])
    response = admin_api.post(
        url,
        {"grades": [{"student": world.students[0].pk, "score": "17.5", "comment": "Good"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert Grade.objects.get(student=world.students[0]).score == Decimal("17.5")
    too_high = admin_api.post(
        url, {"grades": [{"student": world.students[1].pk, "score": "99"}]}, format="json"
    )
    assert too_high.status_code == 400
    assert [g["score"] for g in admin_api.get(url).json()] == ["17.50"]


# --- documents ----------------------------------------------------------------------------------
def test_document_upload_download_and_serve_follow_the_page_rules(world, make_token, api):
    registrar = api(make_token(world.registrar, world.school))
    response = registrar.post(
        reverse("api:document-list"),
        {
            "file": upload("consent.pdf", pdf_bytes("consent")),
            "category": "enrollment",
            "title": "Consent form",
            "student": world.students[0].pk,
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["current_version"]["content_type"] == "application/pdf"
    version_id = body["current_version"]["id"]
    link = registrar.get(reverse("api:document-version-download", args=[version_id])).json()
    assert link["via"] == "local" and link["url"].startswith(reverse("api:document-serve"))
    assert AuditEvent.objects.filter(
        action="document_download", actor=world.registrar, student_id=world.students[0].pk
    ).exists()
    served = registrar.get(link["url"])
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == pdf_bytes("consent")
    # The link names its user: another user of the school cannot follow it.
    other = api(make_token(world.admin, world.school))
    assert other.get(link["url"]).status_code == 403
    # Bytes that are not what the category allows are refused like on the page.
    refused = registrar.post(
        reverse("api:document-list"),
        {"file": upload("x.pdf", b"MZ\x90\x00 not a pdf"), "category": "enrollment"},
        format="multipart",
    )
    assert refused.status_code == 400


def test_teachers_do_not_see_sensitive_documents(world, make_token, api) -> None:
    make_document(world, title="IEP", category=Document.Category.SPECIAL_EDUCATION)
    plain = make_document(world, title="Essay")
    teacher = api(make_token(world.teacher, world.school))
    assert ids(teacher.get(reverse("api:document-list"))) == [plain.pk]


def test_deleting_a_document_moves_it_to_the_trash(world, admin_api) -> None:
    document = make_document(world)
    response = admin_api.delete(reverse("api:document-detail", args=[document.pk]))
    assert response.status_code == 204
    document.refresh_from_db()
    assert document.is_deleted
    assert AuditEvent.objects.filter(action="document_delete").exists()


def test_filters_answer_400_or_nothing_never_a_database_error(world, admin_api) -> None:
    """Cases schemathesis found: what PostgreSQL cannot compare is refused or matches nothing."""
    students = reverse("api:student-list")
    # An ISO offset PostgreSQL refuses (beyond ±15:59) is normalized to UTC first.
    assert (
        admin_api.get(students, {"updated_since": "2026-06-09T08:37:26-19:10"}).status_code == 200
    )
    assert (
        admin_api.get(students, {"updated_since": "9999-12-31T23:59:59-10:00"}).status_code == 400
    )
    assert ids(admin_api.get(students, {"section": 10**20})) == []
    assert ids(admin_api.get(reverse("api:attendance-list"), {"period": 10**9})) == []
    assert admin_api.get(students, {"cursor": "not-a-cursor"}).status_code == 400  # test_cursor.py
    missing = admin_api.get("/api/v1/students/0.5/")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
