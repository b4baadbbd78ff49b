"""The cached pages (dashboard, report card, roster): what a hit costs, that a write shows at
once, and that a stampede on a cold key computes it once. Real Redis (REDIS_URL)."""

from __future__ import annotations

import datetime
import io
import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pypdf import PdfReader

from students import selectors
from students.cache import ATTENDANCE, GRADES, RECORDS, school_cache_bump, school_cached
from students.models import StudentGuardian
from students.services import guardian_link
from tests.students.factories import GuardianFactory

pytestmark = [pytest.mark.django_db]

# Who is asking (session, user, role, permissions) costs the same on every page; what a
# cached page may add on top of that is what these tests bound.
IDENTITY_TABLES = (
    "django_session",
    "auth_user",
    "auth_group",
    "auth_permission",
    "django_content_type",
    "students_staffmember",
    "otp_",
    "axes_",
)


def _beyond_identity(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in queries if not any(t in q["sql"] for t in IDENTITY_TABLES)]


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _attendance_day(world, today: datetime.date) -> datetime.date:
    # A day inside the term, so the report card counts it; never in the future.
    return min(today, world.term.ends_on)


def _submit_attendance(client, world, day: datetime.date, status: str, capture) -> None:
    url = reverse("students:attendance_take", args=[world.section.pk])
    form = {f"status_{s.pk}": status for s in world.students}
    with capture(execute=True):  # the version bump runs on commit
        assert client.post(f"{url}?date={day}", form).status_code == 302


def test_cached_dashboard_figures_cost_at_most_one_query(
    world, django_assert_max_num_queries
) -> None:
    selectors.dashboard_figures_get(school=world.school)  # the miss fills the cache
    with django_assert_max_num_queries(1):
        figures = selectors.dashboard_figures_get(school=world.school)
    assert figures.enrolled == len(world.students) + 1  # and the outsider, in 7B


def test_cached_dashboard_request_adds_at_most_one_query_to_identity(client, world) -> None:
    client.force_login(world.registrar)
    url = reverse("students:dashboard")
    with CaptureQueriesContext(connection) as cold:
        client.get(url)
    with CaptureQueriesContext(connection) as hit:
        page = client.get(url)
    assert page.status_code == 200
    assert len(_beyond_identity(cold.captured_queries)) >= 5  # the figures were computed
    assert len(_beyond_identity(hit.captured_queries)) <= 1, _beyond_identity(hit.captured_queries)


# Tables each document reads to build itself, and that a cache hit must not touch. (The
# audit entry of a roster export reads the class's enrolments to name the students in it.)
DOCUMENT_TABLES = {
    "report_card": ("students_assessment", "students_attendancerecord", "students_sectionteacher"),
    "roster_pdf": ("students_studentguardian", "students_sectionteacher", "students_gradelevel"),
}


@pytest.mark.parametrize("page", sorted(DOCUMENT_TABLES))
def test_cached_report_pages_skip_their_queries(client, world, page) -> None:
    client.force_login(world.registrar)
    url = (
        reverse("students:report_card", args=[world.students[0].pk, world.term.pk])
        if page == "report_card"
        else reverse("students:roster_export", args=[world.section.pk, "pdf"])
    )
    with CaptureQueriesContext(connection) as cold:
        first = client.get(url)
    with CaptureQueriesContext(connection) as hit:
        second = client.get(url)
    assert first.status_code == second.status_code == 200
    assert b"".join(first.streaming_content) == b"".join(second.streaming_content)
    # The hit still checks access to the student/class and writes the audit entry (FERPA).
    assert len(hit.captured_queries) < len(cold.captured_queries)
    for table in DOCUMENT_TABLES[page]:
        assert [q for q in cold.captured_queries if table in q["sql"]], table
        assert not [q for q in hit.captured_queries if table in q["sql"]], table


def test_no_stale_dashboard_after_attendance(
    client, world, today, django_capture_on_commit_callbacks
) -> None:
    client.force_login(world.registrar)
    url = reverse("students:dashboard")
    assert client.get(url).context["figures"].today_marked == 0
    _submit_attendance(client, world, today, "absent", django_capture_on_commit_callbacks)
    fresh = client.get(url).context["figures"]
    assert fresh.today_marked == len(world.students)
    assert fresh.today_rate == 0.0
    assert [r["student_id"] for r in fresh.recent_absences] != []


def test_no_stale_report_card_after_attendance(
    client, world, today, django_capture_on_commit_callbacks
) -> None:
    client.force_login(world.registrar)
    day = _attendance_day(world, today)
    url = reverse("students:report_card", args=[world.students[0].pk, world.term.pk])
    before = _pdf_text(b"".join(client.get(url).streaming_content))
    _submit_attendance(client, world, day, "present", django_capture_on_commit_callbacks)
    present = _pdf_text(b"".join(client.get(url).streaming_content))
    assert present != before
    assert "100.0%" in present
    # And again: a correction (present -> absent) shows on the very next download.
    _submit_attendance(client, world, day, "absent", django_capture_on_commit_callbacks)
    absent = _pdf_text(b"".join(client.get(url).streaming_content))
    assert "0.0%" in absent and "100.0%" not in absent


def test_no_stale_roster_after_a_write(client, world, django_capture_on_commit_callbacks) -> None:
    client.force_login(world.registrar)
    url = reverse("students:roster_export", args=[world.section.pk, "pdf"])
    student = world.students[0]
    assert "Zelda Quackenbush" not in _pdf_text(b"".join(client.get(url).streaming_content))
    StudentGuardian.objects.filter(student=student).update(is_primary=False)
    guardian = GuardianFactory(school=world.school, first_name="Zelda", last_name="Quackenbush")
    with django_capture_on_commit_callbacks(execute=True):
        guardian_link(
            student=student,
            guardian=guardian,
            relationship=StudentGuardian.Relationship.MOTHER,
            is_primary=True,
            actor=world.registrar,
        )
    assert "Zelda Quackenbush" in _pdf_text(b"".join(client.get(url).streaming_content))


def test_attendance_and_grades_leave_the_roster_cached(
    client, world, today, django_capture_on_commit_callbacks
) -> None:
    """Topics: a roster prints no attendance and no grades, so taking attendance (every class,
    every morning) and entering marks do not throw it away; the dashboard is rebuilt."""
    client.force_login(world.registrar)
    roster = reverse("students:roster_export", args=[world.section.pk, "pdf"])
    b"".join(client.get(roster).streaming_content)
    figures = selectors.dashboard_figures_get(school=world.school)
    _submit_attendance(
        client, world, _attendance_day(world, today), "present", django_capture_on_commit_callbacks
    )
    with django_capture_on_commit_callbacks(execute=True):
        school_cache_bump(world.school.pk, GRADES)
    with CaptureQueriesContext(connection) as hit:
        b"".join(client.get(roster).streaming_content)
    assert not [q for q in hit.captured_queries if "students_studentguardian" in q["sql"]]
    assert selectors.dashboard_figures_get(school=world.school).computed_at > figures.computed_at


def test_a_records_write_rebuilds_every_cached_page(
    world, django_capture_on_commit_callbacks
) -> None:
    with pytest.raises(ValueError, match="unknown cache topics"):
        school_cache_bump(world.school.pk, "attendence")
    calls = []
    for topics in [(RECORDS,), (ATTENDANCE,), (GRADES,), (RECORDS, ATTENDANCE, GRADES)]:
        school_cached(
            world.school.pk, f"t-{topics}", lambda: calls.append(1) or 1, 60, topics=topics
        )
    with django_capture_on_commit_callbacks(execute=True):
        school_cache_bump(world.school.pk, RECORDS)
    calls.clear()
    for topics in [(RECORDS,), (ATTENDANCE,), (GRADES,), (RECORDS, ATTENDANCE, GRADES)]:
        school_cached(
            world.school.pk, f"t-{topics}", lambda: calls.append(1) or 1, 60, topics=topics
        )
    assert len(calls) == 2  # the two built from records; attendance and grades alone stay


def test_a_bump_moves_every_page_of_the_school_and_no_other(
    world, other_world, django_capture_on_commit_callbacks
) -> None:
    ours = selectors.dashboard_figures_get(school=world.school)
    theirs = selectors.dashboard_figures_get(school=other_world.school)
    with django_capture_on_commit_callbacks(execute=True):
        school_cache_bump(world.school.pk)
    assert selectors.dashboard_figures_get(school=world.school).computed_at > ours.computed_at
    assert selectors.dashboard_figures_get(school=other_world.school) == theirs


def test_stampede_on_a_cold_key_computes_once() -> None:
    """Ten requests for the same cold page at once: one computes, the others wait for it."""
    calls = []
    start = threading.Barrier(10)
    results: list[str] = []

    def compute() -> str:
        calls.append(1)
        time.sleep(0.5)  # a heavy report
        return "figures"

    def request() -> None:
        start.wait()
        results.append(school_cached(987654, "stampede-test", compute, 60))

    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["figures"] * 10
    assert len(calls) == 1


# --- per student: a register or marks for some children leave the others' pages cached ---------
def _card(client, world, student) -> bytes:
    url = reverse("students:report_card", args=[student.pk, world.term.pk])
    return b"".join(client.get(url).streaming_content)


def _tables_read(client, url: str) -> set[str]:
    """Which of the student, attendance and grade tables a request of `url` reads."""
    with CaptureQueriesContext(connection) as seen:
        response = client.get(url)
        b"".join(response.streaming_content) if response.streaming else response.content
    assert response.status_code == 200
    tables = {"students_student": "student", "students_attendancerecord": "attendance"}
    tables["students_grade"] = "grades"
    return {
        name
        for table, name in tables.items()
        for q in seen.captured_queries
        if f'FROM "{table}"' in q["sql"]
    }


def _reads_attendance(client, url: str) -> bool:
    return "attendance" in _tables_read(client, url)


def test_a_register_rebuilds_its_childrens_pages_only(
    client, world, today, django_capture_on_commit_callbacks
) -> None:
    """Attendance of class 7A moves on 7A's children's report cards and profiles, which show
    it at once, and leaves the child of 7B cached."""
    client.force_login(world.registrar)
    pupil, outsider = world.students[0], world.outsider
    pages = {
        who: [
            reverse("students:report_card", args=[who.pk, world.term.pk]),
            reverse("students:student_detail", args=[who.pk]),
        ]
        for who in (pupil, outsider)
    }
    for urls in pages.values():
        for url in urls:
            assert _reads_attendance(client, url)  # cold: built from the database
    _submit_attendance(
        client, world, _attendance_day(world, today), "absent", django_capture_on_commit_callbacks
    )
    card, profile = pages[pupil]
    assert _reads_attendance(client, card)
    # Of the profile, only the part built from attendance: not the child, nor their marks.
    assert _tables_read(client, profile) == {"attendance"}
    assert not any(_reads_attendance(client, url) for url in pages[outsider])
    # And what was rebuilt shows the register.
    assert "0.0%" in _pdf_text(_card(client, world, pupil))
    page = client.get(reverse("students:student_detail", args=[pupil.pk]))
    assert page.context["profile"].attendance.counts["absent"] == 1
    # The page's cached HTML went with the figures.
    assert b'<span class="pill absent">Absent</span> 1</li>' in page.content


def test_marks_rebuild_the_marked_childrens_pages_only(
    client, world, django_capture_on_commit_callbacks
) -> None:
    client.force_login(world.registrar)
    marked, unmarked = world.students[0], world.students[1]
    urls = {who: reverse("students:student_detail", args=[who.pk]) for who in (marked, unmarked)}
    for url in urls.values():
        client.get(url)
    grades_url = reverse("students:grades_enter", args=[world.assessment.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(grades_url, {f"score_{marked.pk}": "7", f"comment_{marked.pk}": ""})
    assert response.status_code == 302, response.content[-2000:]
    assert _tables_read(client, urls[marked]) == {"grades"}  # the profile's grades part only
    page = client.get(urls[marked])
    profile = page.context["profile"]
    assert [g.score for _term, grades in profile.grades.by_term for g in grades] == [7]
    assert b'<td class="num">7 / ' in page.content  # its HTML went with the figures
    with CaptureQueriesContext(connection) as seen:
        client.get(urls[unmarked])
    assert not [q for q in seen.captured_queries if 'FROM "students_grade"' in q["sql"]]


def test_a_write_naming_no_students_rebuilds_every_childs_pages(
    client, world, django_capture_on_commit_callbacks
) -> None:
    """The admin, an import or a rollover say nothing of which children they touched. The
    profile is cached in parts: a write rebuilds the parts built from what it changed."""
    client.force_login(world.registrar)
    url = reverse("students:student_detail", args=[world.outsider.pk])
    assert _tables_read(client, url) == {"student", "attendance", "grades"}
    assert _tables_read(client, url) == set()
    rebuilt = {
        ATTENDANCE: {"attendance"},
        GRADES: {"grades"},
        RECORDS: {"student", "attendance", "grades"},  # class names, terms: in every part
    }
    for topic, tables in rebuilt.items():
        with django_capture_on_commit_callbacks(execute=True):
            school_cache_bump(world.school.pk, topic)
        assert _tables_read(client, url) == tables, topic
        assert _tables_read(client, url) == set(), topic
    card = reverse("students:report_card", args=[world.outsider.pk, world.term.pk])
    for topic in (ATTENDANCE, GRADES, RECORDS):  # the report card prints all of them
        _tables_read(client, card)
        with django_capture_on_commit_callbacks(execute=True):
            school_cache_bump(world.school.pk, topic)
        assert _reads_attendance(client, card), topic
    with pytest.raises(ValueError, match="only attendance and grades"):
        school_cache_bump(world.school.pk, RECORDS, students=[world.students[0].pk])


def test_a_cached_profile_is_still_out_of_a_teachers_reach(client, world) -> None:
    """The registrar's visit caches the outsider's profile; the teacher of 7A still gets 404
    for it, and nothing of it."""
    outsider = world.outsider
    url = reverse("students:student_detail", args=[outsider.pk])
    client.force_login(world.registrar)
    assert client.get(url).status_code == 200
    client.force_login(world.teacher)
    response = client.get(url)
    assert response.status_code == 404
    assert outsider.last_name.encode() not in response.content
    card = reverse("students:report_card", args=[outsider.pk, world.term.pk])
    assert client.get(card).status_code == 404


def test_a_teachers_cached_class_list_follows_enrolment_at_once(
    client, world, django_capture_on_commit_callbacks
) -> None:
    """A teacher's students are cached (students.tenancy); moving a child into or out of
    their class shows on the very next request, both ways."""
    from students.services import student_enrol

    client.force_login(world.teacher)
    outsider, pupil = world.outsider, world.students[0]
    profile = lambda who: client.get(reverse("students:student_detail", args=[who.pk]))  # noqa: E731
    assert profile(outsider).status_code == 404
    assert profile(pupil).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        student_enrol(student=outsider, section=world.section, actor=world.admin)
        student_enrol(student=pupil, section=world.other_section, actor=world.admin)
    assert profile(outsider).status_code == 200
    assert profile(pupil).status_code == 404
    card = reverse("students:report_card", args=[pupil.pk, world.term.pk])
    assert client.get(card).status_code == 404


def test_cached_dashboard_figures_cost_two_cache_round_trips(world, cache_commands) -> None:
    """Counted by a Redis server of the test's own: the versions of every topic in one MGET,
    then the three parts in another (it was two round trips a part)."""
    cold = selectors.dashboard_figures_get(school=world.school)
    cache_commands()
    assert selectors.dashboard_figures_get(school=world.school) == cold
    assert cache_commands() == {"mget": 2}


def test_any_orm_write_to_who_teaches_whom_moves_the_class_list_on(
    client, world, django_capture_on_commit_callbacks
) -> None:
    """Not only the services: a class teacher or an enrolment saved or deleted by any code
    (a shell, a data fix) reaches a teacher's cached class list, before commit on the
    writing connection and after it everywhere."""
    from students.models import SectionTeacher

    client.force_login(world.teacher)
    url = reverse("students:student_detail", args=[world.outsider.pk])
    assert client.get(url).status_code == 404  # caches the class list
    staff = world.section.teacher_links.first().staff
    with django_capture_on_commit_callbacks(execute=True):
        link = SectionTeacher.objects.create(
            school=world.school, section=world.other_section, staff=staff
        )
        assert client.get(url).status_code == 200  # the writing transaction: past the cache
    assert client.get(url).status_code == 200  # after commit: the cache, moved on
    with django_capture_on_commit_callbacks(execute=True):
        link.delete()
    assert client.get(url).status_code == 404
