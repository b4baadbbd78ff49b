"""Report cards and class rosters: the figures they print, the documents, and their cost."""

from __future__ import annotations

import csv
import datetime
import io
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from students.models import AttendanceRecord, Enrollment, SectionTeacher, Student, StudentGuardian
from students.reports import (
    NO_GRADED_WORK,
    ROSTER_CSV_HEADER,
    letter_grade,
    report_card_data,
    report_card_pdf,
    section_roster_csv,
    section_roster_pdf,
)
from tests.students.factories import (
    AssessmentFactory,
    AttendanceRecordFactory,
    EnrollmentFactory,
    GradeFactory,
    GuardianFactory,
    SectionFactory,
    SectionTeacherFactory,
    StudentFactory,
    StudentGuardianFactory,
    SubjectFactory,
    TermFactory,
)

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

D = Decimal
OCT_1 = datetime.date(2026, 10, 1)  # mid-term: Term 1 runs 2026-08-25 .. 2026-12-19
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def assessment(
    world,
    *,
    name: str,
    subject=None,
    section=None,
    term=None,
    max_score="20",
    weight="1",
    due_on: datetime.date | None = None,
):
    return AssessmentFactory(
        school=world.school,
        section=section or world.section,
        subject=subject or world.subject,
        term=term or world.term,
        name=name,
        max_score=D(max_score),
        weight=D(weight),
        due_on=due_on,
    )


def grade(assessment, student, score: str, comment: str = ""):
    return GradeFactory(assessment=assessment, student=student, score=D(score), comment=comment)


def attend(world, student, day: datetime.date, status: str, section=None) -> None:
    AttendanceRecordFactory(
        school=world.school,
        section=section or world.section,
        student=student,
        date=day,
        status=status,
    )


def graded_term(world):
    """Mathematics: 15/20 (weight 1) and 40/50 (weight 2); English: 9.5/10 and one ungraded."""
    pupil = world.students[0]
    english = SubjectFactory(school=world.school, code="ENG", name="English")
    decimals = assessment(world, name="Decimals test", max_score="50", weight="2")
    essay = assessment(
        world, name="Essay", subject=english, max_score="10", due_on=datetime.date(2026, 9, 10)
    )
    assessment(
        world, name="Poem", subject=english, max_score="10", due_on=datetime.date(2026, 11, 10)
    )
    grade(world.assessment, pupil, "15", "Good work")
    grade(decimals, pupil, "40")
    grade(essay, pupil, "9.5", "Needs care with < and & signs")
    return pupil


# ---------------------------------------------------------------------------------------------
# Report card figures
# ---------------------------------------------------------------------------------------------
def test_report_card_weights_each_subject_and_averages_subjects(world) -> None:
    pupil = graded_term(world)
    # Noise that must not count: another pupil's grade, another class's and another term's work.
    grade(world.assessment, world.students[1], "2")
    grade(assessment(world, name="7B quiz", section=world.other_section), world.outsider, "20")
    term2 = TermFactory(
        school=world.school,
        academic_year=world.year,
        name="Term 2",
        starts_on=datetime.date(2027, 1, 5),
        ends_on=datetime.date(2027, 3, 30),
    )
    grade(assessment(world, name="Algebra", term=term2), pupil, "1")
    SectionTeacherFactory(
        school=world.school, section=world.section, role=SectionTeacher.Role.CO_TEACHER
    )

    card = report_card_data(student=pupil, term=world.term, today=OCT_1)

    assert (card.school, card.student, card.term) == (world.school, pupil, world.term)
    assert (card.section, card.grade_level) == (world.section, world.level)
    assert card.lead_teachers == [world.teacher.get_full_name()]
    english, maths = card.subjects
    assert [(a.assessment.name, a.score, a.max_score) for a in maths.assessments] == [
        ("Decimals test", D("40"), D("50")),
        ("Fractions quiz", D("15"), D("20")),
    ]
    # (15/20 * 1 + 40/50 * 2) / 3 = 78.33...
    assert (maths.percentage, maths.letter, maths.graded_count) == (D("78.3"), "C", 2)
    assert maths.comments == "Good work"
    assert [(a.assessment.name, a.score) for a in english.assessments] == [
        ("Essay", D("9.5")),
        ("Poem", None),
    ]
    assert (english.percentage, english.letter, english.graded_count) == (D("95.0"), "A", 1)
    assert english.comments == "Needs care with < and & signs"
    # Each subject counts once: (78.33... + 95) / 2.
    assert (card.overall_percentage, card.overall_letter) == (D("86.7"), "B")
    assert card.generated_on == OCT_1


def test_zero_weight_work_is_listed_but_does_not_count(world) -> None:
    pupil = world.students[0]
    practice = assessment(world, name="Practice sheet", weight="0")
    grade(practice, pupil, "20")
    grade(world.assessment, pupil, "10")

    (maths,) = report_card_data(student=pupil, term=world.term, today=OCT_1).subjects

    assert maths.graded_count == 2
    assert (maths.percentage, maths.letter) == (D("50.0"), "F")


def test_only_zero_weight_work_gives_no_percentage(world) -> None:
    pupil = world.students[0]
    grade(assessment(world, name="Practice sheet", weight="0"), pupil, "20")

    card = report_card_data(student=pupil, term=world.term, today=OCT_1)

    assert (card.subjects[0].percentage, card.subjects[0].letter) == (None, None)
    assert (card.overall_percentage, card.overall_letter) == (None, None)


@pytest.mark.parametrize(
    ("percentage", "letter"),
    [
        ("100.0", "A"),
        ("90.0", "A"),
        ("89.9", "B"),
        ("80.0", "B"),
        ("79.9", "C"),
        ("70.0", "C"),
        ("69.9", "D"),
        ("60.0", "D"),
        ("59.9", "F"),
        ("0.0", "F"),
    ],
)
def test_letter_grade_boundaries(percentage: str, letter: str) -> None:
    assert letter_grade(D(percentage)) == letter


def test_letter_follows_the_printed_percentage(world) -> None:
    """899.9/1000 = 89.99%, printed as 90.0: the card must not put a B next to it."""
    pupil = world.students[0]
    grade(assessment(world, name="Long test", max_score="1000"), pupil, "899.9")

    card = report_card_data(student=pupil, term=world.term, today=OCT_1)

    assert (card.subjects[0].percentage, card.subjects[0].letter) == (D("90.0"), "A")


def test_attendance_counts_term_days_up_to_today(world) -> None:
    pupil, other = world.students[0], world.students[1]
    for day, status in [
        (datetime.date(2026, 9, 1), AttendanceRecord.Status.PRESENT),
        (datetime.date(2026, 9, 2), AttendanceRecord.Status.PRESENT),
        (datetime.date(2026, 9, 3), AttendanceRecord.Status.LATE),
        (datetime.date(2026, 9, 4), AttendanceRecord.Status.ABSENT),
        (datetime.date(2026, 9, 7), AttendanceRecord.Status.EXCUSED),
        (datetime.date(2026, 8, 24), AttendanceRecord.Status.ABSENT),  # before the term
        (datetime.date(2026, 10, 15), AttendanceRecord.Status.ABSENT),  # after "today"
        (datetime.date(2026, 12, 21), AttendanceRecord.Status.ABSENT),  # after the term
    ]:
        attend(world, pupil, day, status)
    attend(world, other, datetime.date(2026, 9, 1), AttendanceRecord.Status.ABSENT)

    mid_term = report_card_data(student=pupil, term=world.term, today=OCT_1).attendance
    after = report_card_data(
        student=pupil, term=world.term, today=datetime.date(2027, 1, 10)
    ).attendance

    assert (mid_term.present, mid_term.late, mid_term.absent, mid_term.excused) == (2, 1, 1, 1)
    assert (mid_term.total, mid_term.rate, mid_term.through) == (5, D("60.0"), OCT_1)
    assert (after.absent, after.total, after.rate) == (2, 6, D("50.0"))
    assert after.through == datetime.date(2026, 12, 19)


def test_no_attendance_gives_no_rate(world) -> None:
    card = report_card_data(student=world.students[0], term=world.term, today=OCT_1)
    assert (card.attendance.total, card.attendance.rate) == (0, None)


def test_student_who_moved_class_mid_term_keeps_graded_work_from_the_old_class(world) -> None:
    pupil = world.outsider  # in 7B since the start of the year
    Enrollment.objects.filter(student=pupil).update(ended_on=datetime.date(2026, 9, 30))
    EnrollmentFactory(
        school=world.school,
        section=world.section,
        academic_year=world.year,
        student=pupil,
        started_on=OCT_1,
    )
    grade(assessment(world, name="Place value", section=world.other_section), pupil, "18")
    assessment(world, name="Long division", section=world.other_section)  # set after they left
    grade(world.assessment, pupil, "10")

    card = report_card_data(student=pupil, term=world.term, today=OCT_1)

    assert card.section == world.section
    (maths,) = card.subjects
    assert [a.assessment.name for a in maths.assessments] == ["Fractions quiz", "Place value"]
    assert (maths.percentage, maths.letter) == (D("70.0"), "C")


def test_student_who_moved_class_after_the_term_gets_the_terms_class(world) -> None:
    pupil = world.outsider  # in 7B for all of Term 1, then 7A from January
    Enrollment.objects.filter(student=pupil).update(ended_on=datetime.date(2027, 1, 4))
    EnrollmentFactory(
        school=world.school,
        section=world.section,
        academic_year=world.year,
        student=pupil,
        started_on=datetime.date(2027, 1, 5),
    )
    grade(assessment(world, name="Place value", section=world.other_section), pupil, "18")
    assessment(world, name="Long division", section=world.other_section)  # 7B, not yet marked

    card = report_card_data(student=pupil, term=world.term, today=datetime.date(2027, 1, 20))

    assert card.section == world.other_section
    (maths,) = card.subjects  # 7A's Fractions quiz was before their time
    assert [(a.assessment.name, a.score) for a in maths.assessments] == [
        ("Long division", None),
        ("Place value", D("18")),
    ]


def test_student_in_no_class_gets_an_empty_card(world, django_assert_num_queries) -> None:
    newcomer = StudentFactory(school=world.school, grade_level=world.level)

    with django_assert_num_queries(4):  # no class: no teachers or assessments to look up
        card = report_card_data(student=newcomer, term=world.term, today=OCT_1)

    assert (card.section, card.grade_level, card.lead_teachers) == (None, world.level, [])
    assert (card.subjects, card.overall_percentage) == ([], None)
    assert "No graded work this term" in pdf_text(report_card_pdf(card))


def test_term_of_another_school_is_refused(world, other_world) -> None:
    with pytest.raises(ValueError, match="another school"):
        report_card_data(student=world.students[0], term=other_world.term)


# ---------------------------------------------------------------------------------------------
# Report card PDF
# ---------------------------------------------------------------------------------------------
def test_report_card_pdf_prints_names_figures_and_signatures(world) -> None:
    world.school.address = "1 Harbour Road\nNorthtown"
    world.school.principal_name = "Dr. Åsa Ørsted"
    world.school.save()
    pupil = graded_term(world)
    Student.objects.filter(pk=pupil.pk).update(first_name="Zoë", last_name="Ñúñez")
    attend(world, pupil, datetime.date(2026, 9, 1), AttendanceRecord.Status.PRESENT)
    attend(world, pupil, datetime.date(2026, 9, 2), AttendanceRecord.Status.ABSENT)

    pdf = report_card_pdf(report_card_data(student=pupil, term=world.term, today=OCT_1))

    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    for expected in [
        "North School",
        "1 Harbour Road",
        "Student report card",
        "Zoë Ñúñez",
        pupil.student_number,
        "Grade 7",
        "7A",
        "Term 1",
        "25 Aug 2026",
        "19 Dec 2026",
        "Mathematics",
        "78.3%",
        "English",
        "95.0%",
        "86.7%",
        "2 of 2",
        "1 of 2",
        "Good work",
        "Needs care with < and & signs",  # markup characters printed, not parsed
        "50.0%",
        world.teacher.get_full_name(),
        "Principal",
        "Dr. Åsa Ørsted",
        "Generated 1 Oct 2026",
        "Page 1 of 1",
    ]:
        assert expected in text, expected
    assert NO_GRADED_WORK not in text
    assert PdfReader(io.BytesIO(pdf)).metadata.title.startswith("Report card — Zoë Ñúñez")
    if DEJAVU.is_file():  # non-Latin-1 names need the embedded Unicode font
        assert b"DejaVuSans" in pdf


def test_report_card_pdf_for_a_student_without_grades(world) -> None:
    pupil = world.students[1]  # the class has a quiz, but it is not marked yet

    card = report_card_data(student=pupil, term=world.term, today=OCT_1)
    text = pdf_text(report_card_pdf(card))

    assert [s.graded_count for s in card.subjects] == [0]
    assert not card.has_graded_work
    assert NO_GRADED_WORK in text
    assert pupil.last_name in text
    assert "Mathematics" not in text


def test_report_card_pdf_numbers_every_page(world) -> None:
    pupil = world.students[0]
    for n in range(40):
        subject = SubjectFactory(school=world.school, code=f"S{n:02d}", name=f"Subject {n:02d}")
        grade(
            assessment(world, name="Test", subject=subject),
            pupil,
            "12",
            "A long comment that wraps onto a second line of the comments column. " * 2,
        )

    pdf = report_card_pdf(report_card_data(student=pupil, term=world.term, today=OCT_1))

    text, pages = pdf_text(pdf), len(PdfReader(io.BytesIO(pdf)).pages)
    assert pages > 1
    assert f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text


# ---------------------------------------------------------------------------------------------
# Rosters
# ---------------------------------------------------------------------------------------------
def name_roster(world) -> list[Student]:
    """Give the class known names: Adams Bob, Adams Zoë, Zimmer Anna (in roster order)."""
    zimmer, zoe, bob = world.students
    for student, first, last in [
        (zimmer, "Anna", "Zimmer"),
        (zoe, "Zoë", "Adams"),
        (bob, "Bob", "Adams"),
    ]:
        Student.objects.filter(pk=student.pk).update(first_name=first, last_name=last)
        student.refresh_from_db()
    return [bob, zoe, zimmer]


def primary_guardian(student: Student):
    return StudentGuardian.objects.get(student=student, is_primary=True).guardian


def test_roster_csv_lists_open_enrollments_by_name_with_primary_contact(world) -> None:
    bob, zoe, zimmer = name_roster(world)
    Student.objects.filter(pk=zoe.pk).update(preferred_name="Zo", medical_notes="Peanut allergy")
    # A second, non-primary guardian who sorts first by name must not replace the primary one.
    StudentGuardianFactory(
        school=world.school,
        student=zoe,
        is_primary=False,
        guardian=GuardianFactory(school=world.school, last_name="Aaron"),
    )
    left = EnrollmentFactory(
        school=world.school,
        section=world.section,
        academic_year=world.year,
        student__last_name="Gone",
        ended_on=datetime.date(2026, 9, 30),
    )
    no_guardian = EnrollmentFactory(
        school=world.school,
        section=world.section,
        academic_year=world.year,
        student__last_name="Young",
        student__first_name="Yara",
    ).student

    out = io.StringIO()
    count = section_roster_csv(section=world.section, out=out)

    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert count == 4
    assert rows[0] == ROSTER_CSV_HEADER

    def expected(student: Student, preferred: str = "", notes: str = "") -> list[str]:
        g = primary_guardian(student)
        return [
            student.student_number,
            student.last_name,
            student.first_name,
            preferred,
            "2014-05-17",
            "active",
            f"{g.first_name} {g.last_name}",
            g.phone,
            g.email,
            notes,
        ]

    assert rows[1:] == [
        expected(bob),
        expected(zoe, preferred="Zo", notes="Peanut allergy"),
        [no_guardian.student_number, "Young", "Yara", "", "2014-05-17", "active", "", "", "", ""],
        expected(zimmer),
    ]
    assert left.student.student_number not in out.getvalue()
    assert world.outsider.student_number not in out.getvalue()


@pytest.mark.parametrize(
    "dangerous",
    [
        '=HYPERLINK("http://evil.example","x")',
        "+1 555 0100",
        "-2+3",
        "@SUM(A1:A9)",
        "\tcmd",
        "\rcmd",
    ],
)
def test_roster_csv_defuses_spreadsheet_formulas(world, dangerous: str) -> None:
    pupil = world.students[0]
    Student.objects.filter(pk=pupil.pk).update(first_name=dangerous, medical_notes=dangerous)
    guardian = primary_guardian(pupil)
    guardian.phone = dangerous
    guardian.save()

    out = io.StringIO()
    section_roster_csv(section=world.section, out=out)

    row = next(r for r in csv.reader(io.StringIO(out.getvalue())) if r[0] == pupil.student_number)
    assert (row[2], row[7], row[9]) == (f"'{dangerous}",) * 3
    assert row[1] == pupil.last_name  # ordinary cells are left alone


def test_roster_pdf_prints_class_teachers_and_students_without_medical_notes(world) -> None:
    bob, zoe, zimmer = name_roster(world)
    Student.objects.filter(pk=zoe.pk).update(medical_notes="Peanut allergy")
    co = SectionTeacherFactory(
        school=world.school, section=world.section, role=SectionTeacher.Role.CO_TEACHER
    )
    former = SectionTeacherFactory(
        school=world.school,
        section=world.section,
        role=SectionTeacher.Role.SUBSTITUTE,
        starts_on=datetime.date(2026, 9, 1),
        ends_on=datetime.date(2026, 9, 5),
    )

    pdf = section_roster_pdf(section=world.section, today=OCT_1)

    assert pdf.startswith(b"%PDF")
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    assert page.mediabox.width > page.mediabox.height  # landscape
    text = pdf_text(pdf)
    for expected in [
        "North School",
        "Class roster: 7A",
        "Grade 7",
        "3 students",
        f"{world.teacher.get_full_name()} (Lead teacher)",
        f"{co.staff.user.get_full_name()} (Co-teacher)",
        "Adams",
        "Zoë",
        "Zimmer",
        bob.student_number,
        "17 May 2014",
        "Active",
        primary_guardian(zoe).email,
        "Page 1 of 1",
    ]:
        assert expected in text, expected
    assert text.index("Bob") < text.index("Zoë") < text.index("Anna")
    assert "Peanut allergy" not in text
    assert former.staff.user.get_full_name() not in text
    assert world.outsider.student_number not in text


def test_roster_of_an_empty_class(world) -> None:
    empty = SectionFactory(
        school=world.school, academic_year=world.year, grade_level=world.level, name="7Z"
    )
    out = io.StringIO()

    assert section_roster_csv(section=empty, out=out) == 0
    assert out.getvalue().strip() == ",".join(ROSTER_CSV_HEADER)
    text = pdf_text(section_roster_pdf(section=empty))
    assert "No students are enrolled in this class." in text
    assert "none assigned" in text


# ---------------------------------------------------------------------------------------------
# Query counts do not grow with the data
# ---------------------------------------------------------------------------------------------
REPORT_CARD_QUERIES = 6  # student, term, enrollments, lead teachers, assessments, attendance


def test_report_card_queries_do_not_grow_with_assessments(world, django_assert_num_queries):
    pupil = world.students[0]
    grade(world.assessment, pupil, "15", "Fine")
    attend(world, pupil, datetime.date(2026, 9, 1), AttendanceRecord.Status.PRESENT)

    with django_assert_num_queries(REPORT_CARD_QUERIES):
        small = report_card_data(student=pupil, term=world.term, today=OCT_1)

    subjects = [world.subject] + [
        SubjectFactory(school=world.school, code=code, name=name)
        for code, name in [("ENG", "English"), ("SCI", "Science")]
    ]
    for n in range(5):
        grade(
            assessment(world, name=f"Test {n}", subject=subjects[(n + 1) % 3]),
            pupil,
            str(10 + n),
            f"Comment {n}",
        )
    for day in range(2, 9):
        attend(world, pupil, datetime.date(2026, 9, day), AttendanceRecord.Status.LATE)
    SectionTeacherFactory(school=world.school, section=world.section)  # a second lead

    with django_assert_num_queries(REPORT_CARD_QUERIES):
        large = report_card_data(student=pupil, term=world.term, today=OCT_1)
    with django_assert_num_queries(0):  # rendering reads only the gathered data
        report_card_pdf(large)

    assert sum(len(s.assessments) for s in small.subjects) == 1
    assert (len(large.subjects), sum(len(s.assessments) for s in large.subjects)) == (3, 6)
    assert len(large.lead_teachers) == 2
    assert large.attendance.total == 8


def test_roster_queries_do_not_grow_with_the_class(world, django_assert_num_queries):
    section = SectionFactory(
        school=world.school, academic_year=world.year, grade_level=world.level, name="7C"
    )

    def enrol() -> None:
        student = EnrollmentFactory(
            school=world.school, section=section, academic_year=world.year
        ).student
        StudentGuardianFactory(school=world.school, student=student)

    enrol()
    with django_assert_num_queries(2):
        assert section_roster_csv(section=section, out=io.StringIO()) == 1
    with django_assert_num_queries(4):
        section_roster_pdf(section=section)

    for _ in range(5):
        enrol()
    SectionTeacherFactory(school=world.school, section=section)
    with django_assert_num_queries(2):
        assert section_roster_csv(section=section, out=io.StringIO()) == 6
    with django_assert_num_queries(4):
        section_roster_pdf(section=section)
