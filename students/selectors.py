"""Reads across several models. Each selector's query count is fixed, whatever the data size."""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import (
    Avg,
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
)
from django.db.models.expressions import RawSQL, Window
from django.utils import timezone

from .cache import (
    ATTENDANCE,
    GRADES,
    RECORDS,
    school_cached,
    school_cached_parts,
    student_cached_parts,
)
from .models import (
    AcademicYear,
    Assessment,
    AttendanceRecord,
    Enrollment,
    Grade,
    School,
    Section,
    Student,
    StudentGuardian,
    StudentMove,
    Term,
)
from .tenancy import SchoolAccess

PRESENT_LIKE = [AttendanceRecord.Status.PRESENT, AttendanceRecord.Status.LATE]


# ---------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------
@dataclass
class DashboardFigures:
    school_name: str
    academic_year: str
    enrolled: int
    today: datetime.date
    today_rate: float | None
    today_marked: int
    week_rate: float | None
    recent_absences: list[dict[str, Any]]
    section_averages: list[dict[str, Any]]
    computed_at: datetime.datetime = field(default_factory=timezone.now)
    # Whose figures: "school" for the whole school, "teacher:<staff id>" for the classes one
    # teacher teaches that day (the page's cached HTML is keyed by it too).
    scope: str = "school"

    @property
    def for_teacher(self) -> bool:
        return self.scope != "school"


def _rate(present: int, total: int) -> float | None:
    return round(100.0 * present / total, 1) if total else None


def _dashboard_enrolment(school: School) -> dict[str, Any]:
    year = AcademicYear.objects.for_school(school).filter(is_current=True).first()
    enrolled = (
        Enrollment.objects.for_school(school)
        .filter(academic_year=year, ended_on__isnull=True, student__status=Student.Status.ACTIVE)
        .count()
        if year
        else 0
    )
    return {"academic_year": year.name if year else "", "enrolled": enrolled, "at": timezone.now()}


_ABSENCE_COLUMNS = (
    "date",
    "student_id",
    "student__first_name",
    "student__last_name",
    "student__student_number",
    "section__name",
)


def _attendance_figures(
    marks: QuerySet[AttendanceRecord], absences: QuerySet[AttendanceRecord], today: datetime.date
) -> dict[str, Any]:
    """This week's and today's attendance of `marks`, and the last week's absences among
    `absences`: the dashboard's attendance part, for a school or for a teacher's classes."""
    week_start = today - datetime.timedelta(days=today.weekday())
    stats = marks.filter(date__gte=week_start, date__lte=today).aggregate(
        week_total=Count("id"),
        week_present=Count("id", filter=Q(status__in=PRESENT_LIKE)),
        today_total=Count("id", filter=Q(date=today)),
        today_present=Count("id", filter=Q(date=today, status__in=PRESENT_LIKE)),
    )
    recent = list(
        absences.filter(
            date__gte=today - datetime.timedelta(days=7),
            date__lte=today,
            status=AttendanceRecord.Status.ABSENT,
        )
        .order_by("-date", "student__last_name")
        .values(*_ABSENCE_COLUMNS)[:10]
    )
    return {"stats": stats, "recent": recent, "at": timezone.now()}


def _dashboard_attendance(school: School, today: datetime.date) -> dict[str, Any]:
    marks = AttendanceRecord.objects.for_school(school)
    return _attendance_figures(marks, marks, today)


def _dashboard_averages(school: School) -> dict[str, Any]:
    year = AcademicYear.objects.for_school(school).filter(is_current=True).first()
    if not year:
        return {"averages": [], "at": timezone.now()}
    return _section_averages(
        Grade.objects.for_school(school).filter(assessment__section__academic_year=year)
    )


def _section_averages(grades: QuerySet[Grade]) -> dict[str, Any]:
    """The average percentage and number of `grades` per class, by class name."""
    # Sorted here, not in SQL: an ORDER BY made PostgreSQL sort every grade of the year
    # before grouping (GroupAggregate); without one it hashes them (3x faster at 24,000).
    averages = list(
        grades.values("assessment__section_id", "assessment__section__name")
        .annotate(
            average=Avg(
                ExpressionWrapper(F("score") * 100.0 / F("max_score"), output_field=FloatField())
            ),
            graded=Count("id"),
        )
        .order_by()
    )
    for row in averages:
        row["average"] = round(row["average"], 1)
    averages.sort(key=lambda row: (row["assessment__section__name"], row["assessment__section_id"]))
    return {"averages": averages, "at": timezone.now()}


def _dashboard_figures(
    school: School,
    today: datetime.date,
    enrolment: dict[str, Any],
    attendance: dict[str, Any],
    averages: dict[str, Any],
) -> DashboardFigures:
    stats = attendance["stats"]
    return DashboardFigures(
        school_name=school.name,
        academic_year=enrolment["academic_year"],
        enrolled=enrolment["enrolled"],
        today=today,
        today_rate=_rate(stats["today_present"], stats["today_total"]),
        today_marked=stats["today_total"],
        week_rate=_rate(stats["week_present"], stats["week_total"]),
        recent_absences=attendance["recent"],
        section_averages=averages["averages"],
        computed_at=max(enrolment["at"], attendance["at"], averages["at"]),
    )


def _teacher_classes(access: SchoolAccess) -> list[tuple[int, str]]:
    """The ids of the current year's classes the teacher teaches today, and the year's name."""
    return list(
        access.sections()
        .filter(academic_year__is_current=True)
        .values_list("pk", "academic_year__name")
        .order_by("pk")
    )


def _teacher_enrolment(school: School, classes: list[tuple[int, str]]) -> dict[str, Any]:
    if classes:
        year_name = classes[0][1]
    else:  # no class today: the year's name still heads the page
        year = AcademicYear.objects.for_school(school).filter(is_current=True).first()
        year_name = year.name if year else ""
    enrolled = (
        Enrollment.objects.for_school(school)
        .filter(
            section_id__in=[pk for pk, _year in classes],
            ended_on__isnull=True,
            student__status=Student.Status.ACTIVE,
        )
        .values("student_id")
        .distinct()
        .count()
        if classes
        else 0
    )
    return {"academic_year": year_name, "enrolled": enrolled, "at": timezone.now()}


def _teacher_attendance(
    access: SchoolAccess, classes: list[tuple[int, str]], today: datetime.date
) -> dict[str, Any]:
    """The attendance of the teacher's classes; the absences only of children they teach
    (whose pages they may open)."""
    section_ids = [pk for pk, _year in classes]
    marks = AttendanceRecord.objects.for_school(access.school).filter(section_id__in=section_ids)
    return _attendance_figures(marks, marks.filter(student_id__in=access.taught_student_ids), today)


def _teacher_averages(school: School, classes: list[tuple[int, str]]) -> dict[str, Any]:
    # The classes are the current year's already.
    return _section_averages(
        Grade.objects.for_school(school).filter(
            assessment__section_id__in=[pk for pk, _year in classes]
        )
    )


def teacher_dashboard_figures_get(
    *, access: SchoolAccess, today: datetime.date | None = None
) -> DashboardFigures:
    """A teacher's dashboard: their pupils, their classes' attendance, their pupils' recent
    absences and their classes' grade averages, for the classes they teach on `today`.

    Cached per teacher and day in the same three parts as the school's figures, under the
    same school versions (`dashboard_figures_get`): a change of who teaches or is enrolled
    where is a records write and moves every part on. A hit costs no database query; a miss
    of every part costs five (the classes, once for all parts; their pupils; the week's
    attendance; the absences; the averages), plus the teacher's cached pupil list."""
    staff = access.staff
    assert staff is not None  # noqa: S101 - resolve_access builds a teacher from a row
    school, today = access.school, today or timezone.localdate()
    day = today.isoformat()
    classes = functools.cache(lambda: _teacher_classes(access))
    prefix = f"dashboard:teacher:{staff.pk}:{day}"
    enrolment, attendance, averages = school_cached_parts(
        school.pk,
        [
            (f"{prefix}:enrolment", lambda: _teacher_enrolment(school, classes()), (RECORDS,)),
            (
                f"{prefix}:attendance",
                lambda: _teacher_attendance(access, classes(), today),
                (RECORDS, ATTENDANCE),
            ),
            (
                f"{prefix}:averages",
                lambda: _teacher_averages(school, classes()),
                (RECORDS, GRADES),
            ),
        ],
        settings.DASHBOARD_CACHE_TIMEOUT,
    )
    figures = _dashboard_figures(school, today, enrolment, attendance, averages)
    figures.scope = f"teacher:{staff.pk}"
    return figures


def dashboard_figures_for(
    *, access: SchoolAccess, today: datetime.date | None = None
) -> DashboardFigures:
    """The dashboard as `access` may see it: a teacher's classes, or the whole school for
    the roles that see the school."""
    if access.is_teacher:
        return teacher_dashboard_figures_get(access=access, today=today)
    return dashboard_figures_get(school=access.school, today=today)


def dashboard_figures_compute(*, school: School, today: datetime.date) -> DashboardFigures:
    """The dashboard's figures, straight from the database."""
    return _dashboard_figures(
        school,
        today,
        _dashboard_enrolment(school),
        _dashboard_attendance(school, today),
        _dashboard_averages(school),
    )


def dashboard_figures_get(
    *, school: School, today: datetime.date | None = None
) -> DashboardFigures:
    """The dashboard's figures from the cache, computed on a miss. A cache hit costs no
    database query. The figures are cached in three parts, each under the versions of the
    data it is built from: taking attendance recomputes the attendance figures only, and
    entering marks the class averages only."""
    today = today or timezone.localdate()
    enrolment, attendance, averages = school_cached_parts(
        school.pk,
        [
            ("dashboard:enrolment", lambda: _dashboard_enrolment(school), (RECORDS,)),
            (
                f"dashboard:attendance:{today.isoformat()}",
                lambda: _dashboard_attendance(school, today),
                (RECORDS, ATTENDANCE),
            ),
            ("dashboard:averages", lambda: _dashboard_averages(school), (RECORDS, GRADES)),
        ],
        settings.DASHBOARD_CACHE_TIMEOUT,
    )
    return _dashboard_figures(school, today, enrolment, attendance, averages)


# ---------------------------------------------------------------------------------------------
# Student search and list
# ---------------------------------------------------------------------------------------------
# The same expressions as the GIN indexes of migration students/0002, so PostgreSQL uses them.
_STUDENT_FTS = (
    "to_tsvector('simple'::regconfig, students_student.first_name || ' ' || "
    "students_student.last_name || ' ' || students_student.preferred_name || ' ' || "
    "students_student.student_number)"
)
_STUDENT_TRGM = "lower(students_student.first_name || ' ' || students_student.last_name)"
# Scoped to the school's guardians when the caller knows the school: the district-wide
# subquery read every guardian row when the planner misjudged it (bench, issue 9).
_GUARDIAN_MATCH = (
    "students_student.id IN (SELECT sg.student_id FROM students_studentguardian sg "
    "JOIN students_guardian g ON g.id = sg.guardian_id "
    "WHERE (%s::bigint IS NULL OR g.school_id = %s::bigint) "
    "AND (to_tsvector('simple'::regconfig, g.first_name || ' ' || g.last_name) "
    "@@ plainto_tsquery('simple', %s) "
    "OR lower(g.first_name || ' ' || g.last_name) LIKE %s))"
)


def _like_pattern(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def student_search(
    qs: QuerySet[Student], term: str, *, school_id: int | None = None
) -> QuerySet[Student]:
    """Students matching `term` by name (words in any order, prefixes, small typos), student
    number, or a guardian's name. PostgreSQL: full-text and trigram indexes; SQLite: LIKE."""
    term = " ".join(term.split())[:100]
    if not term:
        return qs
    if connection.vendor == "postgresql":
        # Only word characters reach to_tsquery, so no input can break its syntax.
        words = re.findall(r"\w+", term)
        prefix_query = " & ".join(f"{w}:*" for w in words)
        like = _like_pattern(term)
        # The SQL text is constant; user input only ever travels as parameters.
        match = RawSQL(  # noqa: S611
            f"({_STUDENT_FTS} @@ to_tsquery('simple', %s)) "
            f"OR ({_STUDENT_TRGM} LIKE %s) "
            f"OR ({_STUDENT_TRGM} %% lower(%s)) "
            "OR (students_student.student_number ILIKE %s) "
            f"OR {_GUARDIAN_MATCH}",
            (prefix_query, like, term, _like_pattern(term)[1:], school_id, school_id, term, like),
            output_field=BooleanField(),
        )
        similarity = RawSQL(f"similarity({_STUDENT_TRGM}, lower(%s))", (term,))  # noqa: S611
        return (
            qs.filter(match)
            .annotate(relevance=similarity)
            .order_by("-relevance", "last_name", "first_name", "id")
        )
    condition = Q()
    for word in term.split():
        condition &= (
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(preferred_name__icontains=word)
            | Q(student_number__icontains=word)
            | Q(guardians__first_name__icontains=word)
            | Q(guardians__last_name__icontains=word)
        )
    return qs.filter(condition).distinct()


def student_list(
    *,
    access: SchoolAccess,
    search: str = "",
    grade_level_id: int | None = None,
    section_id: int | None = None,
    status: str | None = Student.Status.ACTIVE,
) -> QuerySet[Student]:
    """The student list of the current school, as the user may see it, filtered."""
    qs = access.students().select_related("grade_level")
    if status:
        qs = qs.filter(status=status)
    if grade_level_id:
        qs = qs.filter(grade_level_id=grade_level_id)
    if section_id:
        qs = qs.filter(enrollments__section_id=section_id, enrollments__ended_on__isnull=True)
    qs = qs.annotate(
        current_section=RawSQL(
            "SELECT s.name FROM students_enrollment e JOIN students_section s "
            "ON s.id = e.section_id WHERE e.student_id = students_student.id "
            "AND e.ended_on IS NULL ORDER BY e.started_on DESC LIMIT 1",
            (),
        )
    )
    return student_search(qs, search, school_id=access.school.pk)


def page_with_total(qs: QuerySet[Student], per_page: int, number: Any) -> Page:
    """The page `number` of `qs`, with the total read by the page's own query
    (`COUNT(*) OVER ()`) instead of a second one: a search's matching is then done once.
    Bad numbers follow `Paginator.get_page`: not a number, the first page; below 1 or past
    the end, the last.

    Only on PostgreSQL, for a query without DISTINCT (the window counts before DISTINCT
    removes duplicates); elsewhere, Django's paginator and its COUNT."""
    paginator = Paginator(qs, per_page)
    if connection.vendor != "postgresql" or qs.query.distinct:
        return paginator.get_page(number)
    try:
        wanted = int(number)
    except (TypeError, ValueError):
        wanted = 1
    if not 1 <= wanted <= 100_000:  # below 1, or an OFFSET no page reaches: Django's rules
        return paginator.get_page(number)
    start = (wanted - 1) * per_page
    rows = list(qs.annotate(page_total=Window(Count("*")))[start : start + per_page])
    if not rows and wanted > 1:  # past the end: Django's own way to the last page
        return paginator.get_page(wanted)
    paginator.count = rows[0].page_total if rows else 0  # type: ignore[attr-defined,misc]
    return Page(rows, wanted, paginator)


# ---------------------------------------------------------------------------------------------
# Student profile
# ---------------------------------------------------------------------------------------------
@dataclass
class ProfileRecords:
    """What the profile prints from the school's records."""

    student: Student
    guardian_links: list[StudentGuardian]
    enrollments: list[Enrollment]
    terms: list[Term]
    # Whether the student came from another school of the district (their earlier records
    # are read on each visit, uncached: they belong to that school).
    transferred_in: bool
    computed_at: datetime.datetime = field(default_factory=timezone.now)


@dataclass
class ProfileAttendance:
    counts: dict[str, int]
    rate: float | None
    recent: list[AttendanceRecord]
    computed_at: datetime.datetime = field(default_factory=timezone.now)


@dataclass
class ProfileGrades:
    by_term: list[tuple[Term, list[Grade]]]
    computed_at: datetime.datetime = field(default_factory=timezone.now)


@dataclass
class StudentProfile:
    """The profile page's three parts, each cached on its own (see `student_profile_get`).
    Each part's `computed_at` keys its HTML in the template: new figures, new HTML."""

    records: ProfileRecords
    attendance: ProfileAttendance
    grades: ProfileGrades

    @property
    def student(self) -> Student:
        return self.records.student

    @property
    def transferred_in(self) -> bool:
        return self.records.transferred_in


def student_profile_get(*, access: SchoolAccess, student_id: int) -> StudentProfile:
    """Everything the profile page shows, in a fixed number of queries; from the cache, per
    student, in three parts by what they are built from (students.cache): a register taken
    for the child recomputes only the attendance part, marks only the grades part, and a
    change to the school's records all three.

    Raises Student.DoesNotExist for a student the user may not see, so the view answers 404
    without telling whether the id exists at another school. The scope is checked on every
    request; only a student of the school is ever computed, hence cached.
    """
    if access.is_teacher and student_id not in access.taught_student_ids:
        raise Student.DoesNotExist
    school, today = access.school, timezone.localdate()
    # The year's figures and the terms begun, as of today; read once for both parts.
    day = today.isoformat()
    year = functools.cache(lambda: school_year_get(school=school, today=today))
    records, attendance, grades = student_cached_parts(
        school.pk,
        student_id,
        [
            (
                f"profile-records:{day}",
                lambda: _profile_records(school=school, student_id=student_id, year=year()),
                (RECORDS,),
            ),
            (
                f"profile-attendance:{day}",
                lambda: _profile_attendance(school=school, student_id=student_id, year=year()),
                (RECORDS, ATTENDANCE),
            ),
            (
                "profile-grades",
                lambda: _profile_grades(school=school, student_id=student_id),
                (RECORDS, GRADES),
            ),
        ],
        settings.PROFILE_CACHE_TIMEOUT,
    )
    return StudentProfile(records=records, attendance=attendance, grades=grades)


def _profile_records(*, school: School, student_id: int, year: SchoolYear) -> ProfileRecords:
    """The student of `school` with guardians, enrolments and the terms begun (raises
    Student.DoesNotExist for any other id)."""
    student = (
        Student.objects.for_school(school)
        .select_related("grade_level", "school")
        .annotate(moved_in=Exists(StudentMove.objects.filter(new_record=OuterRef("pk"))))
        .prefetch_related(
            Prefetch(
                "guardian_links",
                queryset=StudentGuardian.objects.select_related("guardian"),
                to_attr="links",
            ),
            Prefetch(
                "enrollments",
                queryset=Enrollment.objects.select_related(
                    "section", "academic_year", "section__grade_level"
                ).order_by("-started_on"),
                to_attr="enrollment_list",
            ),
        )
        .get(pk=student_id)
    )
    return ProfileRecords(
        student=student,
        guardian_links=student.links,  # type: ignore[attr-defined]
        enrollments=student.enrollment_list,  # type: ignore[attr-defined]
        terms=year.terms_begun,
        transferred_in=student.moved_in,  # type: ignore[attr-defined]
    )


@dataclass
class SchoolYear:
    """The school's current year, if any, and its terms begun by a day."""

    year: AcademicYear | None
    terms_begun: list[Term]


def school_year_get(*, school: School, today: datetime.date) -> SchoolYear:
    """The current year and its terms begun by `today`, cached for the school (every
    student's profile prints them)."""

    def read() -> SchoolYear:
        year = AcademicYear.objects.for_school(school).filter(is_current=True).first()
        terms = (
            list(Term.objects.for_school(school).filter(academic_year=year, starts_on__lte=today))
            if year
            else []
        )
        return SchoolYear(year=year, terms_begun=terms)

    return school_cached(
        school.pk,
        f"school-year:{today.isoformat()}",
        read,
        settings.PROFILE_CACHE_TIMEOUT,
        topics=(RECORDS,),
    )


def _profile_attendance(*, school: School, student_id: int, year: SchoolYear) -> ProfileAttendance:
    """The student's attendance this school year: counts by status and the latest ten
    records other than present. The student must be of `school` (checked by the caller)."""
    attendance = AttendanceRecord.objects.filter(student_id=student_id, school=school)
    if year.year:
        attendance = attendance.filter(date__gte=year.year.starts_on, date__lte=year.year.ends_on)
    counts = {status: 0 for status in AttendanceRecord.Status.values}
    for row in attendance.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    total = sum(counts.values())
    present = counts[AttendanceRecord.Status.PRESENT] + counts[AttendanceRecord.Status.LATE]
    recent = list(
        attendance.exclude(status=AttendanceRecord.Status.PRESENT)
        .select_related("section")
        .order_by("-date")[:10]
    )
    return ProfileAttendance(counts=counts, rate=_rate(present, total), recent=recent)


def _profile_grades(*, school: School, student_id: int) -> ProfileGrades:
    """The student's grades by term, in term, subject and due-date order."""
    grades = Grade.objects.filter(student_id=student_id, school=school).select_related(
        "assessment__subject", "assessment__term"
    )
    by_term: dict[int, tuple[Term, list[Grade]]] = {}
    for grade in grades.order_by(
        "assessment__term__starts_on", "assessment__subject__name", "assessment__due_on"
    ):
        term = grade.assessment.term
        by_term.setdefault(term.pk, (term, []))[1].append(grade)
    return ProfileGrades(by_term=list(by_term.values()))


# ---------------------------------------------------------------------------------------------
# Sections: roster, attendance sheet, grade sheet, contact sheet
# ---------------------------------------------------------------------------------------------
def section_roster(*, section: Section, on: datetime.date | None = None) -> list[Student]:
    """Students enrolled in the section on the given day (today by default), by name."""
    on = on or timezone.localdate()
    # One semi-join on enrolments that each cover the day: no DISTINCT over every column to
    # sort, and a child who left the class and came back, or left another class for this
    # one, is on it (a multi-valued exclude() tested any enrolment, not the same one).
    covering = Enrollment.objects.filter(section=section, started_on__lte=on).exclude(
        ended_on__lt=on
    )
    return list(
        Student.objects.filter(pk__in=covering.values("student_id")).order_by(
            "last_name", "first_name", "id"
        )
    )


@dataclass
class AttendanceSheetRow:
    student: Student
    status: str
    note: str


def section_attendance_sheet(
    *, section: Section, date: datetime.date, period: int = 0
) -> list[AttendanceSheetRow]:
    """The roster with any attendance already recorded for that day (two queries)."""
    roster = section_roster(section=section, on=date)
    existing = {
        r.student_id: r
        for r in AttendanceRecord.objects.filter(
            student__in=[s.pk for s in roster], date=date, period=period
        )
    }
    return [
        AttendanceSheetRow(
            student=s,
            status=existing[s.pk].status if s.pk in existing else AttendanceRecord.Status.PRESENT,
            note=existing[s.pk].note if s.pk in existing else "",
        )
        for s in roster
    ]


@dataclass
class GradeSheetRow:
    student: Student
    score: Decimal | None
    comment: str


def assessment_grade_sheet(*, assessment: Assessment) -> list[GradeSheetRow]:
    roster = section_roster(section=assessment.section)
    grades = {g.student_id: g for g in Grade.objects.filter(assessment=assessment)}
    return [
        GradeSheetRow(
            student=s,
            score=grades[s.pk].score if s.pk in grades else None,
            comment=grades[s.pk].comment if s.pk in grades else "",
        )
        for s in roster
    ]


def guardian_contact_sheet(*, section: Section) -> list[tuple[Student, list[StudentGuardian]]]:
    """Each student of the section with their guardians, primary contact first."""
    roster = section_roster(section=section)
    links: dict[int, list[StudentGuardian]] = {s.pk: [] for s in roster}
    for link in (
        StudentGuardian.objects.filter(student__in=list(links))
        .select_related("guardian")
        .order_by("-is_primary", "guardian__last_name")
    ):
        links[link.student_id].append(link)
    return [(s, links[s.pk]) for s in roster]


def section_list(*, access: SchoolAccess) -> QuerySet[Section]:
    """Sections of the current academic year the user may see, with head counts."""
    return (
        access.sections()
        .filter(academic_year__is_current=True)
        .select_related("grade_level", "academic_year")
        .annotate(
            students=Count(
                "enrollments", filter=Q(enrollments__ended_on__isnull=True), distinct=True
            )
        )
        .order_by("grade_level__order", "name")
    )


def section_choices(*, access: SchoolAccess) -> QuerySet[Section]:
    """The classes of `section_list` for a filter's drop-down: no head counts to compute."""
    return (
        access.sections()
        .filter(academic_year__is_current=True)
        .select_related("academic_year")
        .order_by("grade_level__order", "name")
    )


@dataclass
class MissingAttendanceRow:
    section: Section
    missing: list[datetime.date]


def sections_missing_attendance(
    *, access: SchoolAccess, days: list[datetime.date]
) -> list[MissingAttendanceRow]:
    """Classes of the current year with students enrolled but no attendance taken, per school
    day (two queries whatever the number of classes and days)."""
    sections = list(
        access.sections()
        .filter(academic_year__is_current=True, enrollments__ended_on__isnull=True)
        .select_related("grade_level")
        .distinct()
        .order_by("grade_level__order", "name")
    )
    taken = set(
        AttendanceRecord.objects.filter(section__in=sections, date__in=days)
        .values_list("section_id", "date")
        .distinct()
    )
    rows = []
    for section in sections:
        missing = [day for day in days if (section.pk, day) not in taken]
        if missing:
            rows.append(MissingAttendanceRow(section=section, missing=missing))
    return rows


def recent_school_days(*, until: datetime.date, count: int) -> list[datetime.date]:
    """The last `count` weekdays up to and including `until`, oldest first."""
    days: list[datetime.date] = []
    day = until
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= datetime.timedelta(days=1)
    return days[::-1]


@dataclass
class RecordSummary:
    """A student's record at one school, read-only: shown to the school they moved to."""

    student: Student
    enrollments: list[Enrollment]
    attendance_counts: dict[str, int]
    grades: list[Grade]


def student_record_summary(*, student: Student) -> RecordSummary:
    counts = {status: 0 for status in AttendanceRecord.Status.values}
    for row in (
        AttendanceRecord.objects.filter(student=student).values("status").annotate(n=Count("id"))
    ):
        counts[row["status"]] = row["n"]
    return RecordSummary(
        student=student,
        enrollments=list(
            Enrollment.objects.filter(student=student)
            .select_related("section", "academic_year")
            .order_by("-started_on")
        ),
        attendance_counts=counts,
        grades=list(
            Grade.objects.filter(student=student)
            .select_related("assessment__subject", "assessment__term")
            .order_by("assessment__term__starts_on", "assessment__subject__name")
        ),
    )
