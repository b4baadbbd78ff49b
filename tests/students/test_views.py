"""The staff pages: what they show, what they save, and how many queries they cost."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from students.models import AttendanceRecord, Grade
from tests.conftest import build_school
from tests.students.factories import AttendanceRecordFactory, EnrollmentFactory, GradeFactory

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_dashboard_figures(client, world, today) -> None:
    a, b, c = world.students
    for student, status in [(a, "present"), (b, "absent"), (c, "late")]:
        AttendanceRecordFactory(
            school=world.school, section=world.section, student=student, date=today, status=status
        )
    GradeFactory(school=world.school, assessment=world.assessment, student=a, score=Decimal("15"))
    GradeFactory(school=world.school, assessment=world.assessment, student=b, score=Decimal("10"))
    client.force_login(world.admin)
    page = client.get(reverse("students:dashboard"))
    figures = page.context["figures"]
    assert figures.enrolled == 4
    assert figures.today_rate == pytest.approx(66.7)
    assert figures.today_marked == 3
    assert [r["student_id"] for r in figures.recent_absences] == [b.pk]
    assert figures.section_averages[0]["average"] == pytest.approx(62.5)
    assert b"66.7%" in page.content


def test_cached_dashboard_costs_no_figure_queries_and_is_fresh_after_attendance(
    client, world, today, django_capture_on_commit_callbacks
) -> None:
    client.force_login(world.admin)
    client.get(reverse("students:dashboard"))  # fills the cache
    with CaptureQueriesContext(connection) as cached:
        page = client.get(reverse("students:dashboard"))
    # session + user + access (groups, membership): nothing for the figures themselves
    figure_tables = ("students_attendancerecord", "students_enrollment", "students_grade")
    assert not [q for q in cached.captured_queries if any(t in q["sql"] for t in figure_tables)]
    assert page.context["figures"].today_marked == 0
    url = reverse("students:attendance_take", args=[world.section.pk])
    form = {f"status_{s.pk}": "absent" for s in world.students}
    with django_capture_on_commit_callbacks(execute=True):  # the bump runs on commit
        response = client.post(f"{url}?date={today}", form)
    assert response.status_code == 302
    fresh = client.get(reverse("students:dashboard")).context["figures"]
    assert fresh.today_marked == 3
    assert fresh.today_rate == 0.0


def test_take_attendance_saves_and_corrects(client, world, today) -> None:
    client.force_login(world.teacher)
    url = reverse("students:attendance_take", args=[world.section.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert len(page.context["form"].rows) == 3
    a, b, c = world.students
    data = {
        f"status_{a.pk}": "present",
        f"status_{b.pk}": "absent",
        f"status_{c.pk}": "late",
        f"note_{c.pk}": "Bus was late",
    }
    assert client.post(f"{url}?date={today}", data).status_code == 302
    data[f"status_{b.pk}"] = "excused"
    assert client.post(f"{url}?date={today}", data).status_code == 302
    records = {r.student_id: r for r in AttendanceRecord.objects.filter(date=today)}
    assert {k: r.status for k, r in records.items()} == {
        a.pk: "present",
        b.pk: "excused",
        c.pk: "late",
    }
    assert records[c.pk].note == "Bus was late"
    assert records[a.pk].recorded_by == world.teacher
    assert AuditEvent.objects.filter(action="attendance_take").count() == 2


def test_attendance_for_a_future_date_is_refused(client, world, today) -> None:
    client.force_login(world.teacher)
    url = reverse("students:attendance_take", args=[world.section.pk])
    tomorrow = today + datetime.timedelta(days=1)
    data = {f"status_{s.pk}": "present" for s in world.students}
    response = client.post(f"{url}?date={tomorrow}", data)
    assert response.status_code == 200
    assert "future" in response.content.decode()
    assert not AttendanceRecord.objects.exists()


def test_attendance_with_a_missing_student_is_refused_whole(client, world, today) -> None:
    client.force_login(world.teacher)
    url = reverse("students:attendance_take", args=[world.section.pk])
    a, b, _c = world.students
    response = client.post(
        f"{url}?date={today}", {f"status_{a.pk}": "present", f"status_{b.pk}": "bogus"}
    )
    assert response.status_code == 200
    assert not AttendanceRecord.objects.exists()


def test_a_refused_sheet_says_why_and_keeps_what_was_typed(client, world, today) -> None:
    """The sheet's inputs are drawn by the template: a refused post must still show each
    row's error and the values typed, with nothing saved."""
    client.force_login(world.teacher)
    url = reverse("students:attendance_take", args=[world.section.pk])
    a, b, c = world.students
    data = {f"status_{s.pk}": "present" for s in world.students}
    data[f"status_{b.pk}"] = "absent"
    data[f"note_{a.pk}"] = "x" * 201  # over the 200 the page's maxlength allows
    page = client.post(f"{url}?date={today}", data).content.decode()
    assert "nothing was saved" in page
    assert "at most 200 characters" in page
    assert f'name="status_{b.pk}" value="absent" required id="id_status_{b.pk}_1" checked' in page
    assert not AttendanceRecord.objects.exists()

    grades = reverse("students:grades_enter", args=[world.assessment.pk])
    page = client.post(grades, {f"score_{a.pk}": "17", f"comment_{c.pk}": "y" * 301}).content
    text = page.decode()
    assert "at most 300 characters" in text and f'name="score_{a.pk}" value="17"' in text


def test_enter_grades(client, world) -> None:
    client.force_login(world.teacher)
    url = reverse("students:grades_enter", args=[world.assessment.pk])
    a, b, c = world.students
    response = client.post(
        url,
        {
            f"score_{a.pk}": "18.5",
            f"comment_{a.pk}": "Great work",
            f"score_{b.pk}": "7",
            f"score_{c.pk}": "",
        },
    )
    assert response.status_code == 302
    grades = {g.student_id: g for g in Grade.objects.all()}
    assert grades[a.pk].score == Decimal("18.5") and grades[a.pk].comment == "Great work"
    assert grades[b.pk].score == Decimal("7")
    assert c.pk not in grades
    # clearing a score removes it
    client.post(url, {f"score_{a.pk}": "18.5", f"score_{b.pk}": ""})
    assert set(Grade.objects.values_list("student_id", flat=True)) == {a.pk}


def test_score_above_maximum_is_refused_and_nothing_saved(client, world) -> None:
    client.force_login(world.teacher)
    url = reverse("students:grades_enter", args=[world.assessment.pk])
    a, b, _c = world.students
    response = client.post(url, {f"score_{a.pk}": "12", f"score_{b.pk}": "21"})
    assert response.status_code == 200
    assert "less than or equal to 20" in response.content.decode()
    assert not Grade.objects.exists()


def test_student_search_finds_by_name_number_prefix_and_guardian(client, world) -> None:
    a = world.students[0]
    a.first_name, a.last_name = "Zoë", "Okafor-Lindqvist"
    a.save()
    guardian = a.guardian_links.first().guardian
    guardian.first_name, guardian.last_name = "Marguerite", "Fairweather"
    guardian.save()
    client.force_login(world.admin)

    def found(q: str) -> set[int]:
        page = client.get(reverse("students:student_list"), {"q": q, "status": ""})
        return {s.pk for s in page.context["page"]}

    assert a.pk in found("okafor")
    assert a.pk in found("Zoë okaf")
    assert a.pk in found(a.student_number)
    assert a.pk in found("fairweather")
    assert a.pk in found("Okafr-Lindqvist")  # a typo still finds the trigram match
    assert found("nobody-by-this-name") == set()


def test_student_profile_shows_the_record_and_is_audited(client, world) -> None:
    a = world.students[0]
    GradeFactory(school=world.school, assessment=world.assessment, student=a, score=Decimal("15"))
    client.force_login(world.registrar)
    page = client.get(reverse("students:student_detail", args=[a.pk]))
    assert page.status_code == 200
    profile = page.context["profile"]
    assert len(profile.records.guardian_links) == 1
    assert profile.records.enrollments[0].section == world.section
    assert profile.grades.by_term[0][1][0].percent == Decimal("75.0")
    event = AuditEvent.objects.get(action="view")
    assert event.student_id == a.pk and event.actor == world.registrar


def test_guardian_contact_sheet(client, world) -> None:
    client.force_login(world.teacher)
    page = client.get(reverse("students:guardian_contacts", args=[world.section.pk]))
    assert page.status_code == 200
    sheet = page.context["sheet"]
    assert len(sheet) == 3 and all(len(links) == 1 for _s, links in sheet)


# --- query counts do not grow with the data ---------------------------------------------------
def grow(world, extra: int) -> None:
    for n in range(extra):
        student = EnrollmentFactory(
            school=world.school,
            section=world.section,
            academic_year=world.year,
            student__student_number=f"GROW-{n:04d}",
            student__grade_level=world.level,
        ).student
        AttendanceRecordFactory(school=world.school, section=world.section, student=student)
        GradeFactory(school=world.school, assessment=world.assessment, student=student)


PAGES = [
    ("students:student_list", lambda w: []),
    ("students:section_list", lambda w: []),
    ("students:section_detail", lambda w: [w.section.pk]),
    ("students:attendance_take", lambda w: [w.section.pk]),
    ("students:grades_enter", lambda w: [w.assessment.pk]),
    ("students:guardian_contacts", lambda w: [w.section.pk]),
    ("students:student_detail", lambda w: [w.students[0].pk]),
    ("students:dashboard", lambda w: []),
]


@pytest.mark.parametrize("name,args", PAGES, ids=[p[0] for p in PAGES])
def test_query_count_is_constant_as_rows_grow(client, db, name, args) -> None:
    from django.core.cache import cache

    small, large = build_school("Small", students=2), build_school("Large", students=2)
    grow(large, 40)
    counts = []
    for w in (small, large):
        client.force_login(w.registrar)
        client.get(reverse("students:dashboard"))  # session settled
        cache.clear()
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse(name, args=args(w)))
        assert response.status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], (
        f"{name}: {counts[0]} queries with 3 students, {counts[1]} with 43"
    )
    assert counts[1] <= 20, f"{name} uses {counts[1]} queries"


def test_a_class_roster_on_a_day_holds_whoever_is_enrolled_that_day(world) -> None:
    """Each enrolment is tested by itself: a child who came from another class, or who left
    the class and came back, is on its sheets; one who left is not. (A multi-valued
    exclude() once dropped the first two: any ended enrolment counted.)"""
    import datetime

    from students.models import Enrollment
    from students.selectors import section_roster

    d = datetime.date
    came, returner, leaver = world.outsider, world.students[1], world.students[2]

    def moved_in(student, *, left_on: datetime.date, joined_on: datetime.date) -> None:
        Enrollment.objects.filter(student=student).update(ended_on=left_on)
        Enrollment.objects.create(
            school=world.school,
            student=student,
            section=world.section,
            academic_year=world.year,
            started_on=joined_on,
        )

    moved_in(came, left_on=d(2026, 10, 1), joined_on=d(2026, 10, 1))
    moved_in(returner, left_on=d(2026, 9, 15), joined_on=d(2026, 10, 5))
    Enrollment.objects.filter(student=leaver).update(ended_on=d(2026, 9, 20))

    october = set(section_roster(section=world.section, on=d(2026, 10, 10)))
    assert {came, returner} <= october and leaver not in october
    september = set(section_roster(section=world.section, on=d(2026, 9, 16)))
    assert leaver in september and came not in september and returner not in september
    assert came in section_roster(section=world.other_section, on=d(2026, 9, 16))
