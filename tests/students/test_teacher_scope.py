"""A teacher's pages show a teacher's pupils: the dashboard and every list built for them."""

from __future__ import annotations

import datetime
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from students import selectors
from students.models import AttendanceRecord, SectionTeacher, StaffMember
from students.tenancy import resolve_access
from tests.students.factories import (
    AssessmentFactory,
    AttendanceRecordFactory,
    GradeFactory,
    SectionTeacherFactory,
    StaffMemberFactory,
)
from tests.students.test_caching import _beyond_identity

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def busy_world(world, today):
    """Absences and grades in the teacher's class (7A) and in the class next door (7B)."""
    taught, outsider = world.students[0], world.outsider
    for child, section in ((taught, world.section), (outsider, world.other_section)):
        AttendanceRecordFactory(
            school=world.school,
            section=section,
            student=child,
            date=today,
            status=AttendanceRecord.Status.ABSENT,
        )
    GradeFactory(school=world.school, assessment=world.assessment, student=taught, score=16)
    other_quiz = AssessmentFactory(
        school=world.school,
        section=world.other_section,
        subject=world.subject,
        term=world.term,
        name="Next door quiz",
    )
    GradeFactory(school=world.school, assessment=other_quiz, student=outsider, score=8)
    return world


def _dashboard(client, user):
    client.force_login(user)
    page = client.get(reverse("students:dashboard"))
    assert page.status_code == 200
    return page


def test_the_teachers_dashboard_shows_only_their_classes(client, busy_world) -> None:
    world = busy_world
    # The school's figures first: their cached HTML must not be what the teacher is shown.
    school = _dashboard(client, world.registrar)
    assert world.outsider.student_number.encode() in school.content
    assert {r["student_id"] for r in school.context["figures"].recent_absences} == {
        world.students[0].pk,
        world.outsider.pk,
    }

    page = _dashboard(client, world.teacher)
    figures = page.context["figures"]
    assert figures.for_teacher
    assert [r["student_id"] for r in figures.recent_absences] == [world.students[0].pk]
    assert [r["assessment__section_id"] for r in figures.section_averages] == [world.section.pk]
    assert figures.enrolled == len(world.students)  # not the outsider in 7B
    # Today's marks of 7A only: one absence out of one mark.
    assert (figures.today_marked, figures.today_rate) == (1, 0.0)
    assert world.outsider.student_number.encode() not in page.content
    assert world.other_section.name.encode() not in page.content.split(b"<main")[1]
    assert b"Your students" in page.content
    # Every link on it opens.
    for pk in (r["student_id"] for r in figures.recent_absences):
        assert client.get(reverse("students:student_detail", args=[pk])).status_code == 200
    for pk in (r["assessment__section_id"] for r in figures.section_averages):
        assert client.get(reverse("students:section_detail", args=[pk])).status_code == 200


def test_two_teachers_of_one_school_each_see_their_own(client, busy_world) -> None:
    world = busy_world
    member = StaffMemberFactory(
        school=world.school, role=StaffMember.Role.TEACHER, user__username="teacher-7b"
    )
    SectionTeacherFactory(school=world.school, section=world.other_section, staff=member)
    other_teacher = member.user
    first = _dashboard(client, world.teacher).context["figures"]
    second = _dashboard(client, other_teacher).context["figures"]
    assert [r["student_id"] for r in second.recent_absences] == [world.outsider.pk]
    assert [r["student_id"] for r in first.recent_absences] == [world.students[0].pk]
    assert second.enrolled == 1


def test_a_substitute_sees_the_class_only_on_their_days(client, world, today) -> None:
    """Teaching assignments start and end on given days: a substitute whose days are over
    sees nothing of the class on the dashboard."""
    link = SectionTeacher.objects.get(section=world.section, staff__user=world.teacher)
    link.role = SectionTeacher.Role.SUBSTITUTE
    link.starts_on = today - datetime.timedelta(days=10)
    link.ends_on = today - datetime.timedelta(days=1)
    link.save()
    figures = _dashboard(client, world.teacher).context["figures"]
    assert (figures.enrolled, figures.section_averages, figures.recent_absences) == (0, [], [])


def _fixtures_committed() -> None:
    """Run what the fixtures' writes left for their commit, as production would have: the
    cache bumps after enrolments and class teachers are written (until they run, the writing
    transaction reads a teacher's classes past the cache, students.cache)."""
    callbacks, connection.run_on_commit[:] = connection.run_on_commit[:], []
    for _savepoints, callback, _robust in callbacks:
        callback()


def test_the_teachers_dashboard_costs_few_queries_and_none_when_cached(
    client, busy_world, cache_commands
) -> None:
    # cache_commands: a Redis of this test's own, which no other test run flushes meanwhile.
    _fixtures_committed()
    client.force_login(busy_world.teacher)
    url = reverse("students:dashboard")
    client.get(reverse("students:student_list"))  # who is asking: cached (identity, pupils)
    with CaptureQueriesContext(connection) as miss:
        assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as hit:
        assert client.get(url).status_code == 200
    figures_queries = _beyond_identity(miss.captured_queries)
    # The classes, their pupils, the week's attendance, the absences, the averages.
    assert len(figures_queries) <= 5, figures_queries
    assert _beyond_identity(hit.captured_queries) == []


def test_the_teachers_lists_are_their_classes(client, busy_world, today) -> None:
    world = busy_world
    client.force_login(world.teacher)
    classes = client.get(reverse("students:section_list"))
    assert [s.pk for s in classes.context["sections"]] == [world.section.pk]

    students = client.get(reverse("students:student_list"), {"status": ""})
    assert {s.pk for s in students.context["page"]} == {s.pk for s in world.students}
    # The search's class drop-down offers only their class.
    choices = [v for v, _label in students.context["form"].fields["section"].choices if v]
    assert [int(str(v)) for v in choices] == [world.section.pk]
    assert not _shows_text(students.content, world.other_section.name)

    missing = client.get(reverse("students:missing_attendance"))
    assert {row.section.pk for row in missing.context["rows"]} <= {world.section.pk}
    assert not _shows_text(missing.content, world.other_section.name)

    access = resolve_access(world.teacher, world.school.pk)
    assert list(selectors.section_choices(access=access)) == [world.section]


def test_a_batch_page_lists_the_batchs_cards_only(client, world) -> None:
    """A class's batch page lists that class's cards, not the whole term's of the school."""
    from files.models import Document
    from reportcards.models import ReportCardBatch, ReportCardDocument

    def card(student) -> None:
        document = Document.objects.create(
            school=world.school,
            student=student,
            title=f"Card {student.pk}",
            category=Document.Category.choices[0][0],
        )
        ReportCardDocument.objects.create(
            school=world.school, student=student, term=world.term, document=document
        )

    card(world.students[0])
    card(world.outsider)
    batch = ReportCardBatch.objects.create(
        school=world.school,
        term=world.term,
        section=world.section,
        status=ReportCardBatch.Status.DONE,
    )
    client.force_login(world.registrar)
    page = client.get(reverse("reportcards:batch_detail", args=[batch.pk]))
    assert [c.student_id for c in page.context["cards"]] == [world.students[0].pk]


def _shows_text(content: bytes, text: str) -> bool:
    """Whether `text` is an element's whole text: a bare "7B" also turns up inside CSRF
    tokens and other random strings of a page."""
    return re.search(rb">\s*" + re.escape(text.encode()) + rb"\s*<", content) is not None
