"""Model history (django-auditlog) and the events a school answers for: log-ins, roles,
passwords, and bulk writes that send no signals."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from audit.history import MASK
from audit.models import AuditEvent, ModelChange
from students import services
from students.models import AttendanceRecord, Grade, StaffMember, Student, Subject
from tests.students.factories import PASSWORD, SubjectFactory

pytestmark = pytest.mark.django_db


def changes_of(obj: object, action: int) -> list[ModelChange]:
    return list(
        ModelChange.objects.filter(
            content_type=ContentType.objects.get_for_model(obj),
            object_pk=str(obj.pk),  # type: ignore[attr-defined]
            action=action,
        ).order_by("id")
    )


def test_service_writes_leave_history_with_old_and_new_values(world) -> None:
    student = services.student_create(
        school=world.school,
        actor=world.registrar,
        student_number="N-777",
        first_name="Ada",
        last_name="Lovelace",
        date_of_birth="2014-01-02",
        medical_notes="peanut allergy",
    )
    [created] = changes_of(student, ModelChange.Action.CREATE)
    assert created.school_id == world.school.pk
    assert created.student_id == student.pk
    assert created.changes["first_name"] == ["None", "Ada"]
    # Health notes are masked: the entry says they were set, never what they say.
    assert created.changes["medical_notes"] == [MASK, MASK]
    assert "peanut" not in json.dumps(created.changes)

    services.student_update(student=student, actor=world.registrar, first_name="Augusta")
    [updated] = changes_of(student, ModelChange.Action.UPDATE)
    assert updated.changes["first_name"] == ["Ada", "Augusta"]
    assert set(updated.changes) <= {"first_name", "updated_at"}

    pk = student.pk
    student.delete()
    deleted = ModelChange.objects.get(
        content_type=ContentType.objects.get_for_model(Student),
        object_pk=str(pk),
        action=ModelChange.Action.DELETE,
    )
    assert deleted.school_id == world.school.pk and deleted.student_id == pk
    assert deleted.changes["last_name"] == ["Lovelace", "None"]


def test_admin_changes_record_actor_ip_and_values(client, world) -> None:
    client.force_login(world.admin)
    subject = SubjectFactory(school=world.school, code="ART", name="Art")
    url = reverse("admin:students_subject_change", args=[subject.pk])
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data["name"] = "Visual art"
    response = client.post(url, data, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302, response.content[:500]
    [entry] = changes_of(subject, ModelChange.Action.UPDATE)
    assert entry.changes["name"] == ["Art", "Visual art"]
    assert entry.actor == world.admin
    assert entry.remote_addr == "10.1.2.3"
    assert entry.school_id == world.school.pk

    delete = client.post(
        reverse("admin:students_subject_delete", args=[subject.pk]), {"post": "yes"}
    )
    assert delete.status_code == 302
    assert not Subject.objects.filter(pk=subject.pk).exists()
    [gone] = changes_of(subject, ModelChange.Action.DELETE)
    assert gone.actor == world.admin and gone.changes["name"] == ["Visual art", "None"]


def test_bulk_attendance_and_grades_leave_one_entry_per_changed_row(world, today) -> None:
    marks = {s.pk: services.AttendanceMark(status="present") for s in world.students}
    services.attendance_record_bulk(
        section=world.section, date=today, marks=marks, actor=world.teacher
    )
    created = ModelChange.objects.filter(
        content_type=ContentType.objects.get_for_model(AttendanceRecord),
        action=ModelChange.Action.CREATE,
    )
    assert created.count() == len(world.students)
    assert {e.student_id for e in created} == {s.pk for s in world.students}
    assert all(e.actor == world.teacher and e.additional_data == {"bulk": "attendance"}
               for e in created)  # fmt: skip
    ids = set(AttendanceRecord.objects.values_list("pk", flat=True))
    assert {int(e.object_pk) for e in created} == ids

    # A correction: one row changes, the others are saved unchanged and leave nothing.
    first = world.students[0]
    marks[first.pk] = services.AttendanceMark(status="absent", note="sick")
    services.attendance_record_bulk(
        section=world.section, date=today, marks=marks, actor=world.teacher
    )
    [corrected] = ModelChange.objects.filter(
        content_type=ContentType.objects.get_for_model(AttendanceRecord),
        action=ModelChange.Action.UPDATE,
    )
    assert corrected.student_id == first.pk
    assert corrected.changes == {"status": ["present", "absent"], "note": ["", "sick"]}

    entries = {s.pk: services.GradeEntry(score=Decimal("8.50")) for s in world.students}
    services.grade_record_bulk(assessment=world.assessment, entries=entries, actor=world.teacher)
    entries[first.pk] = services.GradeEntry(score=Decimal("9"))
    services.grade_record_bulk(assessment=world.assessment, entries=entries, actor=world.teacher)
    grade_type = ContentType.objects.get_for_model(Grade)
    assert ModelChange.objects.filter(content_type=grade_type, action=0).count() == 3
    [regraded] = ModelChange.objects.filter(content_type=grade_type, action=1)
    assert regraded.changes == {"score": ["8.5", "9"]}


def test_bulk_history_costs_the_same_queries_for_ten_or_forty_rows(
    world, today, django_assert_max_num_queries
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.students.factories import EnrollmentFactory

    def take(count: int) -> int:
        for _n in range(count - len(world.students)):
            world.students.append(
                EnrollmentFactory(
                    school=world.school,
                    section=world.section,
                    academic_year=world.year,
                    student__school=world.school,
                ).student
            )
        marks = {s.pk: services.AttendanceMark(status="late") for s in world.students[:count]}
        with CaptureQueriesContext(connection) as ctx:
            services.attendance_record_bulk(
                section=world.section,
                date=today - __import__("datetime").timedelta(days=count),
                marks=marks,
                actor=world.teacher,
            )
        return len(ctx.captured_queries)

    take(5)  # warms the per-process content-type cache
    assert take(10) == take(40)


def test_login_logout_and_failed_login_through_the_real_view(client, world) -> None:
    login = reverse("login")
    bad = client.post(login, {"username": world.auditor.username, "password": "wrong-guess-1"})
    assert bad.status_code == 200
    failed = AuditEvent.objects.get(action="login_failed")
    assert failed.actor is None and failed.actor_repr == world.auditor.username
    assert failed.school_id == world.school.pk  # the account's school sees the attempt
    assert failed.ip_address == "127.0.0.1"
    assert "wrong-guess-1" not in json.dumps(failed.changes)

    good = client.post(login, {"username": world.auditor.username, "password": PASSWORD})
    assert good.status_code == 302
    event = AuditEvent.objects.get(action="login")
    assert event.actor == world.auditor and event.school_id == world.school.pk

    client.post(reverse("logout"))
    assert AuditEvent.objects.get(action="logout").actor == world.auditor

    # An unknown username is recorded too, at district level (no school).
    client.post(login, {"username": "nobody-here", "password": "x"})
    stranger = AuditEvent.objects.get(action="login_failed", actor_repr="nobody-here")
    assert stranger.school_id is None
    # No password, right or wrong, anywhere in the trail.
    dump = json.dumps(list(AuditEvent.objects.values("changes", "target_repr", "actor_repr")))
    assert PASSWORD not in dump and "wrong-guess-1" not in dump


def test_password_changes_are_events_without_the_password(client, world) -> None:
    client.force_login(world.auditor)
    new = "a-much-longer-new-passphrase-42"
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="password_change")
    assert event.actor == world.auditor and event.school_id == world.school.pk
    # The history of the user row holds a masked value, not the hash.
    entry = ModelChange.objects.filter(
        content_type=ContentType.objects.get_for_model(get_user_model()),
        object_pk=str(world.auditor.pk),
        action=ModelChange.Action.UPDATE,
    ).latest("id")
    assert entry.changes["password"] == [MASK, MASK]
    assert not AuditEvent.objects.filter(action="password_set").exists()

    # An administrator (here a command-line reset: no request, no actor) setting it is
    # recorded as password_set.
    user = get_user_model().objects.get(pk=world.auditor.pk)
    user.set_password("yet-another-passphrase-77")
    user.save()
    set_event = AuditEvent.objects.get(action="password_set")
    assert set_event.school_id == world.school.pk
    assert "yet-another" not in json.dumps(set_event.changes)


def test_role_changes_are_events(client, world) -> None:
    # Building the world granted groups: those were role changes too.
    assert AuditEvent.objects.filter(action="role_change", changes__has_key="groups").exists()
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    member = StaffMember.objects.get(user=world.registrar)
    member.role = StaffMember.Role.TEACHER
    member.save()
    event = AuditEvent.objects.get(action="role_change", id__gt=start)
    assert event.school_id == world.school.pk
    assert event.changes["role"] == ["registrar", "teacher"]

    # Group membership of the account (what the admin's user page edits).
    from django.contrib.auth.models import Group

    world.registrar.groups.add(Group.objects.get(name="Auditor"))
    group_event = AuditEvent.objects.filter(action="role_change").latest("id")
    assert "groups" in group_event.changes
    assert group_event.school_id == world.school.pk

    member.delete()
    assert AuditEvent.objects.get(action="role_revoke").school_id == world.school.pk


def test_csv_import_leaves_per_row_history(world) -> None:
    from students.csv_io import student_import_apply, student_import_parse
    from tests.students.test_csv_io import good_row, make_csv

    columns = ["student_number", "first_name", "last_name", "date_of_birth"]
    existing = world.students[0]
    old_name = existing.first_name
    data = make_csv(
        [good_row("NEW-1"), good_row(existing.student_number, first_name="Renamed")], columns
    )
    plan = student_import_parse(school=world.school, data=data)
    assert plan.errors == []
    student_import_apply(school=world.school, plan=plan, actor=world.registrar)
    student_type = ContentType.objects.get_for_model(Student)
    imported = ModelChange.objects.filter(content_type=student_type, additional_data__bulk="import")
    new = Student.objects.get(student_number="NEW-1")
    created = imported.get(object_pk=str(new.pk))
    assert created.action == ModelChange.Action.CREATE and created.actor == world.registrar
    assert created.school_id == world.school.pk and created.student_id == new.pk
    renamed = imported.get(object_pk=str(existing.pk))
    assert renamed.action == ModelChange.Action.UPDATE
    assert renamed.changes["first_name"] == [old_name, "Renamed"]  # good_row sets the rest
