"""Every list endpoint (from the router) runs the same number of queries for 3 rows as for
30: no query per row, whatever the nested data (guardian links, current versions)."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from students.models import AttendanceRecord, Grade
from tests.api.objects import router_patterns
from tests.files.factories import make_document
from tests.students.factories import (
    AssessmentFactory,
    EnrollmentFactory,
    SectionFactory,
    SectionTeacherFactory,
    StudentGuardianFactory,
)

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def add_rows(w, count: int) -> None:
    """`count` more of every listed thing in the teacher's section of `w`."""
    teacher_staff = w.section.teacher_links.first().staff
    for _ in range(count):
        student = EnrollmentFactory(
            school=w.school, section=w.section, academic_year=w.year, student__grade_level=w.level
        ).student
        StudentGuardianFactory(school=w.school, student=student)
        AttendanceRecord.objects.create(
            school=w.school,
            section=w.section,
            student=student,
            date=datetime.date(2026, 9, 1),
            status="present",
        )
        Grade.objects.create(
            school=w.school,
            assessment=w.assessment,
            student=student,
            score=10,
            max_score=w.assessment.max_score,
        )
        make_document(w, student=student, title=f"Report {student.pk}")
        section = SectionFactory(
            school=w.school, academic_year=w.year, grade_level=w.level, name=f"X{student.pk}"
        )
        SectionTeacherFactory(school=w.school, section=section, staff=teacher_staff)
        AssessmentFactory(school=w.school, section=section, subject=w.subject, term=w.term)


def list_query_counts(client) -> dict[str, tuple[int, int]]:
    counts = {}
    for _basename, name, _pattern in router_patterns():
        if not name.endswith("-list"):
            continue
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse(name), {"page_size": 100})
        assert response.status_code == 200, (name, response.content)
        counts[name] = (len(ctx.captured_queries), len(response.json()["results"]))
    return counts


@pytest.mark.parametrize("role", ["admin", "teacher"])
def test_list_queries_do_not_grow_with_rows(world, make_token, api, role) -> None:
    client = api(make_token(getattr(world, role), world.school))
    add_rows(world, 3)
    client.get(reverse("api:section-list"))  # first call of a token stamps its last use
    small = list_query_counts(client)
    add_rows(world, 27)
    large = list_query_counts(client)
    for name in small:
        assert large[name][1] >= 30, f"{name} lists {large[name][1]} rows"
        assert large[name][0] == small[name][0], (
            f"{name}: {small[name][0]} queries for {small[name][1]} rows, "
            f"{large[name][0]} for {large[name][1]}"
        )
    print({name: queries for name, (queries, _rows) in large.items()})
