"""Constraints the database itself enforces."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from students.models import Enrollment, Grade, Student
from tests.students.factories import (
    EnrollmentFactory,
    GradeFactory,
    SectionFactory,
    StudentFactory,
)

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_student_number_unique_per_school_not_across(world, other_world) -> None:
    StudentFactory(school=other_world.school, student_number="NORTH-001")  # other school: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        StudentFactory(school=world.school, student_number="NORTH-001")


def test_grade_above_max_is_refused_by_the_database(world) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Grade.objects.create(
            school=world.school,
            assessment=world.assessment,
            student=world.students[0],
            score=Decimal("21"),
            max_score=world.assessment.max_score,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        GradeFactory(assessment=world.assessment, student=world.students[0], score=Decimal("-1"))
    GradeFactory(assessment=world.assessment, student=world.students[0], score=Decimal("20"))
    assert Grade.objects.count() == 1


def test_one_open_enrollment_per_student_per_year(world) -> None:
    student = world.students[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        EnrollmentFactory(
            school=world.school,
            student=student,
            section=world.other_section,
            academic_year=world.year,
        )
    Enrollment.objects.filter(student=student).update(ended_on=datetime.date(2026, 9, 30))
    EnrollmentFactory(
        school=world.school,
        student=student,
        section=world.other_section,
        academic_year=world.year,
        started_on=datetime.date(2026, 10, 1),
    )
    assert Enrollment.objects.filter(student=student).count() == 2


def test_cross_school_links_fail_validation(world, other_world) -> None:
    from django.core.exceptions import ValidationError

    enrollment = Enrollment(
        school=world.school,
        student=world.students[0],
        section=other_world.section,
        academic_year=world.year,
    )
    with pytest.raises(ValidationError, match="another school"):
        enrollment.full_clean()


def test_student_in_the_future_is_invalid(world) -> None:
    from django.core.exceptions import ValidationError

    student = Student(
        school=world.school,
        student_number="X-1",
        first_name="A",
        last_name="B",
        date_of_birth=datetime.date(2999, 1, 1),
    )
    with pytest.raises(ValidationError):
        student.full_clean()


def test_section_name_unique_per_year(world) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        SectionFactory(
            school=world.school, academic_year=world.year, grade_level=world.level, name="7A"
        )
