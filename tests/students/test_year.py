"""The school year in practice: rollover, transfers, missing attendance, absence alerts."""

from __future__ import annotations

import datetime

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from students.demo import demo_data_create
from students.models import (
    AbsenceAlert,
    AbsenceAlertSettings,
    AcademicYear,
    AttendanceRecord,
    Enrollment,
    Grade,
    GradeLevelChange,
    Guardian,
    School,
    Section,
    SectionTeacher,
    Student,
    StudentMove,
)
from students.moves import earlier_records, student_transfer, student_withdraw
from students.rollover import rollover_apply, rollover_plan
from students.services import student_update

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
DAY = datetime.date(2026, 11, 24)


def row_counts() -> dict[str, int]:
    from django.apps import apps

    return {m.__name__: m.objects.count() for m in apps.get_app_config("students").get_models()}


# --- rollover ----------------------------------------------------------------------------------
@pytest.fixture
def seeded(settings) -> School:
    settings.DEMO_PASSWORD = "rollover-demo-password"
    demo_data_create(schools=1, students_per_school=120, seed=9, today=DAY, attendance_days=3)
    return School.objects.get()


def test_rollover_dry_run_changes_nothing(seeded) -> None:
    before = row_counts()
    year = AcademicYear.objects.get(is_current=True)
    plan = rollover_plan(school=seeded, from_year=year, name="2027-2028")
    assert len(plan.changes) == 120
    assert plan.counts == {"promoted": 100, "retained": 0, "graduated": 20, "withdrawn": 0}
    assert row_counts() == before
    out = __import__("io").StringIO()
    call_command(
        "rollover_year",
        school=seeded.code,
        name="2027-2028",
        dry_run=True,
        copy_sections=True,
        stdout=out,
    )
    assert "Dry run" in out.getvalue() and row_counts() == before


def test_full_rollover_of_a_seeded_school(seeded) -> None:
    old = AcademicYear.objects.get(is_current=True)
    students = list(Student.objects.order_by("pk").select_related("grade_level"))
    retained, withdrawn, early_grad = students[0], students[1], students[2]
    top = next(s for s in students if s.grade_level.order == 6)
    kept = {
        "attendance": AttendanceRecord.objects.count(),
        "grades": Grade.objects.count(),
        "students": Student.objects.count(),
        "guardians": Guardian.objects.count(),
    }
    sections_before = Section.objects.filter(academic_year=old).count()
    plan = rollover_plan(
        school=seeded,
        from_year=old,
        name="2027-2028",
        copy_sections=True,
        exceptions={retained.pk: "retained", withdrawn.pk: "withdrawn", early_grad.pk: "graduated"},
    )
    new = rollover_apply(plan=plan, actor=None)

    old.refresh_from_db()
    assert new.is_current and not old.is_current
    assert new.starts_on == datetime.date(2027, 8, 25) and new.terms.count() == 3
    # nothing lost: history stays, alumni stay
    assert AttendanceRecord.objects.count() == kept["attendance"]
    assert Grade.objects.count() == kept["grades"]
    assert Student.objects.count() == kept["students"]
    assert Guardian.objects.count() == kept["guardians"]
    # every old enrollment ended at the old year's end
    assert not Enrollment.objects.filter(academic_year=old, ended_on__isnull=True).exists()
    assert Section.objects.filter(academic_year=new).count() == sections_before
    assert SectionTeacher.objects.filter(section__academic_year=new).count() == sections_before
    by_id = {s.pk: s for s in Student.objects.select_related("grade_level")}
    assert by_id[retained.pk].grade_level == retained.grade_level
    assert by_id[withdrawn.pk].status == Student.Status.WITHDRAWN
    assert StudentMove.objects.filter(student=withdrawn, kind="withdrawal").exists()
    assert by_id[early_grad.pk].status == Student.Status.GRADUATED
    assert by_id[top.pk].status == Student.Status.GRADUATED
    promoted = [
        s
        for s in students
        if s.pk not in {retained.pk, withdrawn.pk, early_grad.pk} and s.grade_level.order < 6
    ]
    assert all(by_id[s.pk].grade_level.order == s.grade_level.order + 1 for s in promoted)
    new_enrollments = Enrollment.objects.filter(academic_year=new, ended_on__isnull=True)
    assert new_enrollments.count() == len(promoted) + 1  # + the retained student
    # a 3B pupil goes to 4B: same place within the grade
    sample = promoted[0]
    old_section = Enrollment.objects.get(student=sample, academic_year=old).section
    new_section = new_enrollments.get(student=sample).section
    assert new_section.name[1:] == old_section.name[1:]
    assert new_section.grade_level.order == old_section.grade_level.order + 1
    assert GradeLevelChange.objects.filter(reason="promoted").count() == len(promoted)
    assert GradeLevelChange.objects.filter(reason="graduated").count() == 21
    # the same year cannot be made twice
    with pytest.raises(ValidationError):
        rollover_plan(school=seeded, from_year=new, name="2027-2028")


def test_rollover_refuses_unknown_exceptions(seeded) -> None:
    from tests.students.factories import StudentFactory

    old = AcademicYear.objects.get(school=seeded, is_current=True)
    stranger = StudentFactory(school=seeded, student_number="NOT-ENROLLED")
    with pytest.raises(ValidationError, match="not enrolled"):
        rollover_plan(
            school=seeded, from_year=old, name="2027-2028", exceptions={stranger.pk: "retained"}
        )
    enrolled = Enrollment.objects.filter(academic_year=old).first().student
    with pytest.raises(ValidationError, match="Unknown outcome"):
        rollover_plan(
            school=seeded, from_year=old, name="2027-2028", exceptions={enrolled.pk: "expelled"}
        )


def test_rollover_wizard_in_the_admin(client, world) -> None:
    client.force_login(world.admin)
    url = reverse("admin:students_academicyear_rollover", args=[world.year.pk])
    data = {
        "name": "2027-2028",
        "starts_on": "2027-08-25",
        "ends_on": "2028-06-30",
        "copy_sections": "on",
        "exceptions": f"{world.students[0].student_number} retained",
    }
    preview = client.post(url, {**data, "preview": "1"})
    assert preview.status_code == 200 and preview.context["plan"].counts["retained"] == 1
    assert not AcademicYear.objects.filter(name="2027-2028").exists()
    done = client.post(url, {**data, "apply": "1"})
    assert done.status_code == 302
    assert AcademicYear.objects.get(school=world.school, name="2027-2028").is_current
    bad = client.post(
        url, {**data, "name": "2028-2029", "exceptions": "NOPE-1 retained", "preview": "1"}
    )
    assert "no student NOPE-1" in bad.content.decode()


# --- transfers and withdrawals -----------------------------------------------------------------
def test_transfer_is_visible_to_the_right_school_at_the_right_dates(
    client, world, other_world, today
) -> None:
    pupil = world.students[0]
    effective = today + datetime.timedelta(days=7)
    move = student_transfer(
        student=pupil, to_school=other_world.school, effective_on=effective, actor=world.registrar
    )
    arrived = move.new_record
    assert arrived.school == other_world.school and arrived.guardians.count() == 1
    pupil.refresh_from_db()
    assert pupil.status == Student.Status.TRANSFERRED
    # before the transfer date the receiving school does not see the old record ...
    assert earlier_records(student=arrived, on=today) == []
    client.force_login(other_world.registrar)
    page = client.get(reverse("students:student_detail", args=[arrived.pk]))
    assert page.context["earlier"] == []
    # ... from it on, it sees the full history
    assert earlier_records(student=arrived, on=effective) == [pupil]
    move.effective_on = today
    move.save()
    page = client.get(reverse("students:student_detail", args=[arrived.pk]))
    assert [r.student for r in page.context["earlier"]] == [pupil]
    assert world.school.name in page.content.decode()
    # but never opens the old record directly
    assert client.get(reverse("students:student_detail", args=[pupil.pk])).status_code == 404
    # the sending school keeps its record, read-only
    client.force_login(world.registrar)
    assert client.get(reverse("students:student_detail", args=[pupil.pk])).status_code == 200
    with pytest.raises(ValidationError, match="read-only"):
        student_update(student=pupil, actor=world.registrar, first_name="Changed")
    assert not Enrollment.objects.filter(student=pupil, ended_on__isnull=True).exists()
    from audit.models import AuditEvent

    assert set(
        AuditEvent.objects.filter(action="transfer").values_list("school_id", flat=True)
    ) == {world.school.pk, other_world.school.pk}


def test_withdraw_through_the_page(client, world, today) -> None:
    pupil = world.students[1]
    client.force_login(world.registrar)
    url = reverse("students:student_move", args=[pupil.pk])
    bad = client.post(url, {"kind": "transfer", "effective_on": today, "reason_code": "moved"})
    assert "Choose the school" in bad.content.decode()
    done = client.post(url, {"kind": "withdrawal", "effective_on": today, "reason_code": "moved"})
    assert done.status_code == 302
    pupil.refresh_from_db()
    assert pupil.status == Student.Status.WITHDRAWN
    with pytest.raises(ValidationError, match="not an active student"):
        student_withdraw(student=pupil, effective_on=today, reason_code="moved", actor=None)
    client.force_login(world.teacher)
    assert (
        client.get(reverse("students:student_move", args=[world.students[2].pk])).status_code == 403
    )


# --- missing attendance ------------------------------------------------------------------------
def test_missing_attendance_lists_classes_without_a_register(client, world, today) -> None:
    client.force_login(world.admin)
    url = reverse("students:missing_attendance") + f"?date={today}"
    rows = client.get(url).context["rows"]
    assert {r.section for r in rows} == {world.section, world.other_section}
    assert all(today in r.missing for r in rows)
    for pupil in world.students:
        AttendanceRecord.objects.create(
            school=world.school, section=world.section, student=pupil, date=today, status="present"
        )
    rows = client.get(url).context["rows"]
    mine = [r for r in rows if r.section == world.section]
    assert not mine or today not in mine[0].missing
    client.force_login(world.teacher)  # a teacher sees only their classes
    rows = client.get(url).context["rows"]
    assert world.other_section not in {r.section for r in rows}


# --- absence alerts ----------------------------------------------------------------------------
def take(client, world, today, statuses: dict, captured) -> None:
    url = reverse("students:attendance_take", args=[world.section.pk]) + f"?date={today}"
    with captured(execute=True):
        assert (
            client.post(url, {f"status_{s.pk}": v for s, v in statuses.items()}).status_code == 302
        )


def test_absence_alert_once_per_student_per_day(
    client, world, today, django_capture_on_commit_callbacks
) -> None:
    a, b, c = world.students
    b_guardian = b.guardian_links.get().guardian
    c_guardian = c.guardian_links.get().guardian
    c_guardian.receives_absence_alerts = False  # opted out
    c_guardian.save()
    settings_row = AbsenceAlertSettings.objects.create(
        school=world.school, subject="{student_first_name} missed school on {date}"
    )
    client.force_login(world.teacher)
    take(
        client,
        world,
        today,
        {a: "present", b: "absent", c: "absent"},
        django_capture_on_commit_callbacks,
    )
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [b_guardian.email]
    assert mail.outbox[0].subject.startswith(f"{b.first_name} missed school")
    # saving the register again, or marking b absent in another period, sends nothing more
    take(
        client,
        world,
        today,
        {a: "absent", b: "absent", c: "excused"},
        django_capture_on_commit_callbacks,
    )
    assert len(mail.outbox) == 2  # only a's guardian is new
    assert AbsenceAlert.objects.filter(student=b, date=today, status="sent").count() == 1
    assert not AbsenceAlert.objects.filter(student=c).exists()
    settings_row.enabled = False
    settings_row.save()


def test_alert_templates_are_checked(world) -> None:
    row = AbsenceAlertSettings(school=world.school, subject="Hi {nobody}", body="{unclosed")
    with pytest.raises(ValidationError) as caught:
        row.full_clean()
    assert "nobody" in str(caught.value) and "Braces" in str(caught.value)


def test_rollover_is_announced_before_it_writes(seeded) -> None:
    """students.signals.risky_operation goes out before the first write (the backups app
    answers it with a restore point): a receiver sees the old year still current."""
    from students.models import AcademicYear
    from students.signals import risky_operation

    year = AcademicYear.objects.for_school(seeded).get(is_current=True)
    heard: list[dict] = []

    def listen(sender, **kwargs) -> None:
        heard.append(
            {**kwargs, "current": AcademicYear.objects.for_school(seeded).get(is_current=True)}
        )

    risky_operation.connect(listen, dispatch_uid="test-listen")
    try:
        plan = rollover_plan(school=seeded, from_year=year, name="2027-2028")
        rollover_apply(plan=plan, actor=None)
    finally:
        risky_operation.disconnect(dispatch_uid="test-listen")
    assert len(heard) == 1
    assert heard[0]["reason"] == "rollover" and heard[0]["school_id"] == seeded.pk
    assert heard[0]["current"] == year and "2027-2028" in heard[0]["description"]
