"""Shared fixtures: a small school with a class, its staff in every role, and a second school
that nobody in the first may see."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.core.cache import cache

from students.models import StaffMember
from tests.emulators import gcs_endpoint, moto_endpoint  # noqa: F401  (shared fixtures)
from tests.students.factories import (
    AcademicYearFactory,
    AssessmentFactory,
    EnrollmentFactory,
    GradeLevelFactory,
    SchoolFactory,
    SectionFactory,
    SectionTeacherFactory,
    StaffMemberFactory,
    StudentGuardianFactory,
    SubjectFactory,
    TermFactory,
    district_admin,
)

# Each xdist worker gets its own Redis database for the cache: the test databases of two
# workers reuse the same primary keys, and `cache.clear()` flushes a whole Redis database.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
if settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache":
    base = settings.CACHES["default"]["LOCATION"].rsplit("/", 1)[0]
    settings.CACHES["default"]["LOCATION"] = f"{base}/{4 + XDIST_WORKER}"


@dataclass
class SchoolWorld:
    school: object
    year: object
    term: object
    level: object
    section: object
    other_section: object
    subject: object
    students: list
    outsider: object  # enrolled in other_section, not taught by `teacher`
    assessment: object
    admin: object
    registrar: object
    teacher: object
    auditor: object


def build_school(prefix: str, students: int = 3) -> SchoolWorld:
    school = SchoolFactory(name=f"{prefix} School", code=prefix.lower())
    year = AcademicYearFactory(school=school)
    term = TermFactory(school=school, academic_year=year, name="Term 1")
    level = GradeLevelFactory(school=school, name="Grade 7", order=7)
    section = SectionFactory(school=school, academic_year=year, grade_level=level, name="7A")
    other = SectionFactory(school=school, academic_year=year, grade_level=level, name="7B")
    subject = SubjectFactory(school=school, code="MATH", name="Mathematics")
    pupils = [
        EnrollmentFactory(
            school=school,
            section=section,
            academic_year=year,
            student__student_number=f"{prefix.upper()}-{n:03d}",
            student__grade_level=level,
        ).student
        for n in range(1, students + 1)
    ]
    for pupil in pupils:
        StudentGuardianFactory(school=school, student=pupil)
    outsider = EnrollmentFactory(
        school=school,
        section=other,
        academic_year=year,
        student__student_number=f"{prefix.upper()}-900",
        student__grade_level=level,
    ).student
    assessment = AssessmentFactory(
        school=school, section=section, subject=subject, term=term, name="Fractions quiz"
    )

    def member(role: str) -> object:
        return StaffMemberFactory(
            school=school, role=role, user__username=f"{role}-{prefix.lower()}"
        ).user

    teacher_link = SectionTeacherFactory(
        school=school,
        section=section,
        staff__user__username=f"teacher-{prefix.lower()}",
    )
    return SchoolWorld(
        school=school,
        year=year,
        term=term,
        level=level,
        section=section,
        other_section=other,
        subject=subject,
        students=pupils,
        outsider=outsider,
        assessment=assessment,
        admin=member(StaffMember.Role.SCHOOL_ADMIN),
        registrar=member(StaffMember.Role.REGISTRAR),
        teacher=teacher_link.staff.user,
        auditor=member(StaffMember.Role.AUDITOR),
    )


@pytest.fixture
def world(db: None) -> SchoolWorld:
    return build_school("North")


@pytest.fixture
def other_world(db: None) -> SchoolWorld:
    return build_school("South")


@pytest.fixture
def district_user(db: None) -> object:
    return district_admin()


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _same_fake_names(request) -> None:
    """Faker's names differ per run unless seeded; a test that sees a surprising name
    collision then fails every time, not one run in fifty."""
    import factory.random

    factory.random.reseed_random(request.node.nodeid)


@pytest.fixture
def today() -> datetime.date:
    from django.utils import timezone

    return timezone.localdate()


@pytest.fixture
def live_celery():
    """Send tasks to the real broker instead of running them in-process (unit tests' default)."""
    from school_site.celery import app

    app.conf.task_always_eager = False
    yield app
    app.conf.task_always_eager = True
