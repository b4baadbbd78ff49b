"""The demo data set: complete, deterministic, and all or nothing."""

from __future__ import annotations

import datetime

import pytest
from django.db import transaction

from students.demo import demo_data_create, school_days
from students.models import (
    AttendanceRecord,
    Enrollment,
    Grade,
    School,
    StaffMember,
    Student,
    StudentGuardian,
)
from students.tenancy import resolve_access

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
DAY = datetime.date(2026, 11, 24)


class Rollback(Exception):
    pass


def snapshot() -> list[tuple]:
    return list(
        Student.objects.order_by("student_number").values_list(
            "student_number", "first_name", "last_name", "date_of_birth", "grade_level__name"
        )
    )


def test_demo_data_is_complete_and_deterministic(settings) -> None:
    settings.DEMO_PASSWORD = "demo-password-for-tests"
    result = demo_data_create(
        schools=2, students_per_school=90, seed=3, today=DAY, attendance_days=4
    )
    assert (result.schools, result.students) == (2, 180)
    assert School.objects.count() == 2
    assert Enrollment.objects.filter(ended_on__isnull=True).count() == 180
    assert StudentGuardian.objects.filter(is_primary=True).count() == 180
    assert AttendanceRecord.objects.count() == 180 * 4 == result.attendance
    assert Grade.objects.count() == result.grades > 0
    assert not AttendanceRecord.objects.filter(date__gt=DAY).exists()
    # every teacher can work: they have a section and see its students
    teacher = StaffMember.objects.filter(role="teacher").first()
    access = resolve_access(teacher.user, None)
    assert access is not None and access.students().count() > 0
    assert teacher.user.check_password("demo-password-for-tests")


def test_same_seed_and_day_give_the_same_data() -> None:
    runs = []
    for _ in range(2):
        with pytest.raises(Rollback), transaction.atomic():
            demo_data_create(
                schools=1, students_per_school=40, seed=11, today=DAY, attendance_days=2
            )
            runs.append(
                (
                    snapshot(),
                    list(
                        AttendanceRecord.objects.order_by(
                            "student__student_number", "date"
                        ).values_list("status", flat=True)
                    ),
                )
            )
            raise Rollback
    assert runs[0] == runs[1]
    assert len(runs[0][0]) == 40


def test_school_days_skip_weekends() -> None:
    days = school_days(datetime.date(2026, 11, 20), datetime.date(2026, 11, 24))
    assert days == [
        datetime.date(2026, 11, 20),
        datetime.date(2026, 11, 23),
        datetime.date(2026, 11, 24),
    ]
