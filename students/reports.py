"""Documents printed from the school record: report cards and class rosters.

The data is gathered by selectors (`report_card_data`, `_section_roster_rows`) in a fixed
number of queries, and rendered by functions that touch no database, so a view, a Celery task
or a command can produce the same document, and a batch of cards costs one render per card
rather than a query per assessment.
"""

from __future__ import annotations

import csv
import datetime
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from django.conf import settings
from django.db.models import Count, F, FilteredRelation, Prefetch, Q
from django.utils import timezone
from django.utils.formats import date_format
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from .cache import RECORDS, school_cached, student_cached
from .csv_io import csv_cell
from .models import (
    Assessment,
    AttendanceRecord,
    Enrollment,
    GradeLevel,
    School,
    Section,
    SectionTeacher,
    Student,
    StudentGuardian,
    Subject,
    Term,
)

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

ONE_DECIMAL = Decimal("0.1")
HUNDRED = Decimal(100)
# Lower bound of each letter, highest first.
LETTER_GRADES: tuple[tuple[Decimal, str], ...] = (
    (Decimal(90), "A"),
    (Decimal(80), "B"),
    (Decimal(70), "C"),
    (Decimal(60), "D"),
)
NO_GRADED_WORK = "No graded work this term"


# ---------------------------------------------------------------------------------------------
# Report card: data
# ---------------------------------------------------------------------------------------------
@dataclass
class AssessmentResult:
    assessment: Assessment
    score: Decimal | None  # None: not graded (yet)
    max_score: Decimal
    comment: str = ""

    @property
    def is_graded(self) -> bool:
        return self.score is not None


@dataclass
class SubjectResult:
    subject: Subject
    assessments: list[AssessmentResult]
    percentage: Decimal | None  # weighted, one decimal; None when nothing weighted is graded
    letter: str | None
    comments: str  # the teachers' grade comments, in assessment order

    @property
    def graded_count(self) -> int:
        return sum(1 for a in self.assessments if a.is_graded)


@dataclass
class AttendanceSummary:
    starts_on: datetime.date
    through: datetime.date  # the term's end, or today while the term is running
    present: int = 0
    absent: int = 0
    late: int = 0
    excused: int = 0

    @property
    def total(self) -> int:
        return self.present + self.absent + self.late + self.excused

    @property
    def rate(self) -> Decimal | None:
        """Percent of records the student was in class for (late counts as attended)."""
        if not self.total:
            return None
        return _percent(Decimal(self.present + self.late) / self.total)


@dataclass
class ReportCard:
    school: School
    student: Student
    term: Term  # with its academic_year loaded
    grade_level: GradeLevel | None
    section: Section | None
    lead_teachers: list[str]
    subjects: list[SubjectResult]
    overall_percentage: Decimal | None
    overall_letter: str | None
    attendance: AttendanceSummary
    generated_on: datetime.date

    @property
    def has_graded_work(self) -> bool:
        return any(s.graded_count for s in self.subjects)


def letter_grade(percentage: Decimal | None) -> str | None:
    """The letter for a percentage as printed (one decimal), so a card never shows
    89.96 rounded to 90.0 next to a B."""
    if percentage is None:
        return None
    for lower, letter in LETTER_GRADES:
        if percentage >= lower:
            return letter
    return "F"


def _percent(fraction: Decimal) -> Decimal:
    return (fraction * HUNDRED).quantize(ONE_DECIMAL, rounding=ROUND_HALF_UP)


def _weighted_fraction(results: Sequence[AssessmentResult]) -> Decimal | None:
    graded = [r for r in results if r.score is not None]
    total_weight = sum((r.assessment.weight for r in graded), Decimal(0))
    if not total_weight:  # nothing graded, or only zero-weight (practice) work
        return None
    earned = sum(
        (r.score / r.max_score * r.assessment.weight for r in graded if r.score is not None),
        Decimal(0),
    )
    return earned / total_weight


def report_card_data(
    *, student: Student, term: Term, today: datetime.date | None = None
) -> ReportCard:
    """Everything a term's report card prints, in six queries however many subjects and
    assessments there are (four for a student in no class that year).

    The student and term are read again with their relations so the count does not depend on
    what the caller's instances happen to have cached. Attendance is counted up to `today`
    (default: the local date), so a card printed mid-term does not count days not yet held.
    """
    today = today or timezone.localdate()
    if student.school_id != term.school_id:
        raise ValueError("The term belongs to another school than the student.")
    student = Student.objects.select_related("school", "grade_level").get(pk=student.pk)
    term = Term.objects.select_related("academic_year").get(pk=term.pk)

    enrollments = list(
        Enrollment.objects.for_school(student.school_id)
        .filter(student=student, academic_year_id=term.academic_year_id)
        .select_related("section__grade_level")
        .order_by("started_on", "id")
    )
    in_term = [
        e
        for e in enrollments
        if e.started_on <= term.ends_on and (e.ended_on is None or e.ended_on >= term.starts_on)
    ]
    # The class the student is in now, if they were in it this term; else their last class of
    # the term (they moved or withdrew since); else, for a term they had no class in, today's.
    shown = (
        next((e for e in in_term if e.ended_on is None), None)
        or (in_term[-1] if in_term else None)
        or next((e for e in enrollments if e.ended_on is None), None)
    )
    section = shown.section if shown else None
    section_ids = {e.section_id for e in in_term}

    lead_teachers: list[str] = []
    if section:
        # Leads during the term: one who handed over mid-term still taught it.
        leads = (
            SectionTeacher.objects.filter(section=section, role=SectionTeacher.Role.LEAD)
            .filter(
                Q(starts_on__isnull=True) | Q(starts_on__lte=term.ends_on),
                Q(ends_on__isnull=True) | Q(ends_on__gte=term.starts_on),
            )
            .select_related("staff__user")
            .order_by("staff__user__last_name", "staff__user__first_name")
        )
        lead_teachers = [
            link.staff.user.get_full_name() or link.staff.user.get_username() for link in leads
        ]

    # One query: each assessment LEFT JOINed to this student's grade only.
    rows = (
        Assessment.objects.for_school(student.school_id)
        .filter(term=term, section_id__in=section_ids)
        .annotate(mine=FilteredRelation("grades", condition=Q(grades__student=student)))
        .annotate(
            my_score=F("mine__score"), my_max=F("mine__max_score"), my_comment=F("mine__comment")
        )
        .select_related("subject")
        .order_by("subject__name", "subject_id", F("due_on").asc(nulls_last=True), "name", "id")
    )
    by_subject: dict[int, tuple[Subject, list[AssessmentResult]]] = {}
    for a in rows:
        graded = a.my_score is not None
        # Work set in a class the student has since left is not theirs to be marked on;
        # only what they were graded on there carries over.
        if not graded and a.section_id != (section.pk if section else None):
            continue
        by_subject.setdefault(a.subject_id, (a.subject, []))[1].append(
            AssessmentResult(
                assessment=a,
                score=a.my_score if graded else None,
                max_score=a.my_max if graded else a.max_score,
                comment=(a.my_comment or "").strip() if graded else "",
            )
        )

    subjects: list[SubjectResult] = []
    fractions: list[Decimal] = []
    for subject, results in by_subject.values():
        fraction = _weighted_fraction(results)
        percentage = _percent(fraction) if fraction is not None else None
        if fraction is not None:
            fractions.append(fraction)
        subjects.append(
            SubjectResult(
                subject=subject,
                assessments=results,
                percentage=percentage,
                letter=letter_grade(percentage),
                comments="; ".join(r.comment for r in results if r.comment),
            )
        )
    # Each subject counts once, whatever its number of assessments or weight scale; from the
    # unrounded subject figures.
    overall = _percent(sum(fractions, Decimal(0)) / len(fractions)) if fractions else None

    through = min(term.ends_on, today)
    counts = (
        AttendanceRecord.objects.for_school(student.school_id)
        .filter(student=student, date__gte=term.starts_on, date__lte=through)
        .aggregate(
            **{
                status: Count("id", filter=Q(status=status))
                for status in AttendanceRecord.Status.values
            }
        )
    )
    attendance = AttendanceSummary(starts_on=term.starts_on, through=through, **counts)

    return ReportCard(
        school=student.school,
        student=student,
        term=term,
        grade_level=section.grade_level if section else student.grade_level,
        section=section,
        lead_teachers=lead_teachers,
        subjects=subjects,
        overall_percentage=overall,
        overall_letter=letter_grade(overall),
        attendance=attendance,
        generated_on=today,
    )


# ---------------------------------------------------------------------------------------------
# Rosters: data and CSV
# ---------------------------------------------------------------------------------------------
ROSTER_CSV_HEADER = [
    "student_number",
    "last_name",
    "first_name",
    "preferred_name",
    "date_of_birth",
    "status",
    "guardian_name",
    "guardian_phone",
    "guardian_email",
    "medical_notes",
]


@dataclass
class RosterRow:
    student: Student
    guardian: StudentGuardian | None


def _section_roster_rows(*, section: Section) -> list[RosterRow]:
    """Students with an open enrollment in the section, by name, each with their primary
    contact (two queries). Without a guardian flagged primary, the first one listed stands
    in: a printed roster is what a teacher calls from on a trip, and a number beats a blank."""
    students = (
        Student.objects.for_school(section.school_id)
        .filter(enrollments__section=section, enrollments__ended_on__isnull=True)
        .order_by("last_name", "first_name", "id")
        .distinct()
        .prefetch_related(
            Prefetch(
                "guardian_links",
                queryset=StudentGuardian.objects.select_related("guardian").order_by(
                    "-is_primary", "guardian__last_name", "guardian__first_name", "id"
                ),
                to_attr="contacts",
            )
        )
    )
    return [RosterRow(student=s, guardian=s.contacts[0] if s.contacts else None) for s in students]


def section_roster_csv(*, section: Section, out: SupportsWrite[str]) -> int:
    """Write the class roster as CSV to `out` (a file, or an HttpResponse) and return the
    number of students. Two queries whatever the class size.

    Every cell that a spreadsheet would evaluate gets a leading quote: names, notes and
    phone numbers are typed by people, and a roster is opened in Excel.
    """
    writer = csv.writer(out)
    writer.writerow(ROSTER_CSV_HEADER)
    rows = _section_roster_rows(section=section)
    for row in rows:
        s, guardian = row.student, row.guardian.guardian if row.guardian else None
        writer.writerow(
            [
                csv_cell(v)
                for v in (
                    s.student_number,
                    s.last_name,
                    s.first_name,
                    s.preferred_name,
                    s.date_of_birth.isoformat(),
                    s.status,
                    guardian.full_name if guardian else "",
                    (guardian.phone or guardian.alternate_phone) if guardian else "",
                    guardian.email if guardian else "",
                    s.medical_notes,
                )
            ]
        )
    return len(rows)


# ---------------------------------------------------------------------------------------------
# PDF: fonts, styles, page furniture
# ---------------------------------------------------------------------------------------------
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
INK = colors.HexColor("#1F2933")
MUTED = colors.HexColor("#616E7C")
ACCENT = colors.HexColor("#1F3A5F")
RULE = colors.HexColor("#C7D0DB")
ZEBRA = colors.HexColor("#F2F5F9")
PANEL = colors.HexColor("#F7F9FB")
MARGIN = 15 * mm
FRAME_PADDING = 6  # SimpleDocTemplate's frame pads each side by 6 pt; tables must fit inside

_font_lock = threading.Lock()
_fonts: tuple[str, str, str] | None = None


def _font_names() -> tuple[str, str, str]:
    """(regular, bold, italic) font names, registering DejaVu Sans once per process.

    The 14 built-in PDF fonts only cover Latin-1, so a name such as "Łucja Dvořák" would
    print with holes; DejaVu covers Latin, Greek and Cyrillic. Helvetica is the fallback
    where the font package is missing (and still prints "Zoë Ñúñez").
    """
    global _fonts
    with _font_lock:
        if _fonts is None:
            _fonts = _register_dejavu() or ("Helvetica", "Helvetica-Bold", "Helvetica-Oblique")
        return _fonts


def _register_dejavu() -> tuple[str, str, str] | None:
    files = {
        "DejaVuSans": "DejaVuSans.ttf",
        "DejaVuSans-Bold": "DejaVuSans-Bold.ttf",
        "DejaVuSans-Oblique": "DejaVuSans-Oblique.ttf",
        "DejaVuSans-BoldOblique": "DejaVuSans-BoldOblique.ttf",
    }
    if not (DEJAVU_DIR / files["DejaVuSans"]).is_file():
        return None
    found = {name: name for name in files}
    for name, filename in files.items():
        path = DEJAVU_DIR / filename
        if path.is_file():
            pdfmetrics.registerFont(TTFont(name, str(path)))
        else:
            found[name] = "DejaVuSans"  # a missing style falls back to the regular face
    # So that <b> and <i> inside a Paragraph pick the right faces.
    pdfmetrics.registerFontFamily(
        "DejaVuSans",
        normal="DejaVuSans",
        bold=found["DejaVuSans-Bold"],
        italic=found["DejaVuSans-Oblique"],
        boldItalic=found["DejaVuSans-BoldOblique"],
    )
    return "DejaVuSans", found["DejaVuSans-Bold"], found["DejaVuSans-Oblique"]


@dataclass
class _Styles:
    regular: str
    bold: str
    italic: str
    p: dict[str, ParagraphStyle] = field(default_factory=dict)

    def __post_init__(self) -> None:
        base = ParagraphStyle("body", fontName=self.regular, fontSize=9, leading=12, textColor=INK)
        self.p = {
            "body": base,
            "small": ParagraphStyle(
                "small", parent=base, fontSize=7.5, leading=10, textColor=MUTED
            ),
            "school": ParagraphStyle(
                "school", parent=base, fontName=self.bold, fontSize=16, leading=20, textColor=ACCENT
            ),
            "title": ParagraphStyle(
                "title",
                parent=base,
                fontName=self.bold,
                fontSize=13,
                leading=16,
                textColor=ACCENT,
                alignment=TA_RIGHT,
            ),
            "title_sub": ParagraphStyle("title_sub", parent=base, alignment=TA_RIGHT),
            "h2": ParagraphStyle(
                "h2",
                parent=base,
                fontName=self.bold,
                fontSize=11,
                leading=14,
                textColor=ACCENT,
                spaceBefore=10,
                spaceAfter=4,
            ),
            "label": ParagraphStyle(
                "label", parent=base, fontSize=7.5, leading=10, textColor=MUTED
            ),
            "value": ParagraphStyle("value", parent=base, fontName=self.bold),
            "cell": ParagraphStyle("cell", parent=base, fontSize=8.5, leading=11),
            "th": ParagraphStyle(
                "th",
                parent=base,
                fontName=self.bold,
                fontSize=8.5,
                leading=11,
                textColor=colors.white,
            ),
            "th_center": ParagraphStyle(
                "th_center",
                parent=base,
                fontName=self.bold,
                fontSize=8.5,
                leading=11,
                textColor=colors.white,
                alignment=TA_CENTER,
            ),
            "empty": ParagraphStyle(
                "empty", parent=base, fontName=self.italic, textColor=MUTED, alignment=TA_CENTER
            ),
            "sign": ParagraphStyle(
                "sign", parent=base, fontSize=8.5, leading=11, alignment=TA_CENTER
            ),
            "sign_name": ParagraphStyle(
                "sign_name",
                parent=base,
                fontSize=7.5,
                leading=10,
                textColor=MUTED,
                alignment=TA_CENTER,
            ),
        }

    def __call__(self, text: object, style: str = "body") -> Paragraph:
        """A paragraph of plain text: escaped, because names and comments may hold & or <."""
        return Paragraph(escape("" if text is None else str(text)), self.p[style])

    def markup(self, markup: str, style: str = "body") -> Paragraph:
        return Paragraph(markup, self.p[style])


def _styles() -> _Styles:
    return _Styles(*_font_names())


class _FooterCanvas(Canvas):
    """Draws the footer once the page count is known, for "page X of Y": pages are kept
    until `save()` instead of being written as they finish."""

    def __init__(self, *args: Any, footer: str, font: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._footer = footer
        self._footer_font = font
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 (ReportLab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for number, state in enumerate(self._pages, start=1):
            self.__dict__.update(state)
            self._draw_footer(number, total)
            super().showPage()
        super().save()

    def _draw_footer(self, number: int, total: int) -> None:
        width, _height = self._pagesize
        left, right, y = MARGIN + FRAME_PADDING, width - MARGIN - FRAME_PADDING, 10 * mm
        self.saveState()
        self.setStrokeColor(RULE)
        self.setLineWidth(0.5)
        self.line(left, y + 4 * mm, right, y + 4 * mm)
        self.setFont(self._footer_font, 7.5)
        self.setFillColor(MUTED)
        self.drawString(left, y, self._footer)
        self.drawRightString(right, y, f"Page {number} of {total}")
        self.restoreState()


def _build_pdf(
    story: list[Flowable],
    *,
    pagesize: tuple[float, float],
    title: str,
    author: str,
    footer: str,
    font: str,
) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=pagesize,
        title=title,
        author=author,
        creator="Schoolhouse",
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=14 * mm,
        bottomMargin=20 * mm,
    )
    doc.build(story, canvasmaker=partial(_FooterCanvas, footer=footer, font=font))
    return buffer.getvalue()


def _content_width(pagesize: tuple[float, float]) -> float:
    return pagesize[0] - 2 * MARGIN - 2 * FRAME_PADDING


def _day(value: datetime.date) -> str:
    return date_format(value, "j M Y")


def _pct(value: Decimal | None) -> str:
    return f"{value}%" if value is not None else "—"


def _grid_style(*, font: str, zebra_from: int = 1) -> list[tuple[Any, ...]]:
    """The house table look: shaded header row, hairline grid, zebra body rows."""
    return [
        ("BACKGROUND", (0, 0), (-1, 0), ACCENT),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("FONTSIZE", (0, 0), (-1, -1), 8.5),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ROWBACKGROUNDS", (0, zebra_from), (-1, -1), [colors.white, ZEBRA]),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ("BOX", (0, 0), (-1, -1), 0.5, ACCENT),
        ("TOPPADDING", (0, 0), (-1, -1), 4),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
        ("LEFTPADDING", (0, 0), (-1, -1), 5),
        ("RIGHTPADDING", (0, 0), (-1, -1), 5),
    ]


def _school_contact(school: School) -> str:
    lines = [escape(line.strip()) for line in school.address.splitlines() if line.strip()]
    contact = " · ".join(escape(v) for v in (school.phone, school.email) if v)
    return "<br/>".join([*lines, contact] if contact else lines)


def _header(
    s: _Styles, *, school: School, title: str, subtitle_lines: list[str], width: float
) -> Table:
    left = [s(school.name, "school")]
    if contact := _school_contact(school):
        left.append(s.markup(contact, "small"))
    right = [s(title, "title"), *(s(line, "title_sub") for line in subtitle_lines)]
    table = Table([[left, right]], colWidths=[width * 0.55, width * 0.45])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                ("LINEBELOW", (0, 0), (-1, 0), 1.5, ACCENT),
            ]
        )
    )
    return table


# ---------------------------------------------------------------------------------------------
# Report card: PDF
# ---------------------------------------------------------------------------------------------
def _legal_name(student: Student) -> str:
    name = " ".join(p for p in (student.first_name, student.middle_name, student.last_name) if p)
    if student.preferred_name and student.preferred_name != student.first_name:
        name += f" ({student.preferred_name})"
    return name


def report_card_pdf(card: ReportCard) -> bytes:
    """The report card as an A4 PDF. Pure rendering: no database access, so a batch of cards
    can be rendered in a worker from data gathered up front."""
    s = _styles()
    width = _content_width(A4)
    term, year = card.term, card.term.academic_year
    term_dates = f"{_day(term.starts_on)} – {_day(term.ends_on)}"
    teachers = ", ".join(card.lead_teachers) or "—"

    story: list[Flowable] = [
        _header(
            s,
            school=card.school,
            title="Student report card",
            width=width,
            subtitle_lines=[f"{term.name} · {year.name}", term_dates],
        ),
        Spacer(1, 8),
    ]

    # Who and when.
    def pair(label: str, value: object) -> list[Paragraph]:
        return [s(label, "label"), s(value if value not in (None, "") else "—", "value")]

    facts = [
        pair("Student", _legal_name(card.student))
        + pair("Student number", card.student.student_number),
        pair("Grade level", card.grade_level.name if card.grade_level else None)
        + pair("Section", card.section.name if card.section else None),
        pair("Term", f"{term.name} ({year.name})") + pair("Term dates", term_dates),
        pair("Lead teacher" if len(card.lead_teachers) < 2 else "Lead teachers", teachers)
        + pair("Issued", _day(card.generated_on)),
    ]
    info = Table(facts, colWidths=[width * 0.14, width * 0.38, width * 0.16, width * 0.32])
    info.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), PANEL),
                ("BOX", (0, 0), (-1, -1), 0.5, RULE),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    story += [info, s("Academic performance", "h2")]

    # Subjects.
    header = [
        s("Subject", "th"),
        s("Graded", "th_center"),
        s("Percentage", "th_center"),
        s("Grade", "th_center"),
        s("Teacher comments", "th"),
    ]
    style = _grid_style(font=s.regular)
    style += [("ALIGN", (1, 1), (3, -1), "CENTER")]
    rows: list[list[Any]] = [header]
    if card.has_graded_work:
        for subject in card.subjects:
            rows.append(
                [
                    s(subject.subject.name, "cell"),
                    f"{subject.graded_count} of {len(subject.assessments)}",
                    _pct(subject.percentage),
                    subject.letter or "—",
                    s(subject.comments or "", "cell"),
                ]
            )
        style += [("FONTNAME", (3, 1), (3, -1), s.bold)]
    else:
        rows.append([s(NO_GRADED_WORK, "empty"), "", "", "", ""])
        style += [
            ("SPAN", (0, 1), (-1, 1)),
            ("TOPPADDING", (0, 1), (-1, 1), 10),
            ("BOTTOMPADDING", (0, 1), (-1, 1), 10),
        ]
    rows.append(
        [
            s.markup("<b>Overall average</b>", "cell"),
            "",
            _pct(card.overall_percentage),
            card.overall_letter or "—",
            "",
        ]
    )
    style += [
        ("SPAN", (0, -1), (1, -1)),
        ("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#E4EAF2")),
        ("LINEABOVE", (0, -1), (-1, -1), 1, ACCENT),
        ("FONTNAME", (0, -1), (-1, -1), s.bold),
        ("FONTSIZE", (0, -1), (-1, -1), 9.5),
    ]
    subjects = Table(
        rows, colWidths=[width * f for f in (0.22, 0.11, 0.13, 0.09, 0.45)], repeatRows=1
    )
    subjects.setStyle(TableStyle(style))
    story += [
        subjects,
        Spacer(1, 3),
        s(
            "Grading scale: A 90–100 · B 80–89.9 · C 70–79.9 · D 60–69.9 · F below 60. A subject's "
            "percentage weights each assessment by its weight; the overall average counts each "
            "subject once.",
            "small",
        ),
    ]

    # Attendance.
    att = card.attendance
    if att.through >= att.starts_on:
        period = f"Recorded from {_day(att.starts_on)} to {_day(att.through)}."
    else:
        period = "The term has not started yet."
    attendance = Table(
        [
            [
                s(h, "th_center")
                for h in (
                    "Present",
                    "Late",
                    "Absent",
                    "Excused",
                    "Total recorded",
                    "Attendance rate",
                )
            ],
            [att.present, att.late, att.absent, att.excused, att.total, _pct(att.rate)],
        ],
        colWidths=[width / 6] * 6,
    )
    attendance.setStyle(
        TableStyle(
            _grid_style(font=s.regular)
            + [
                ("ALIGN", (0, 1), (-1, 1), "CENTER"),
                ("FONTSIZE", (0, 1), (-1, 1), 11),
                ("FONTNAME", (-1, 1), (-1, 1), s.bold),
                ("TOPPADDING", (0, 1), (-1, 1), 7),
                ("BOTTOMPADDING", (0, 1), (-1, 1), 7),
            ]
        )
    )
    story.append(
        KeepTogether(
            [
                s("Attendance", "h2"),
                attendance,
                Spacer(1, 3),
                s(f"{period} The rate counts days present or late.", "small"),
            ]
        )
    )

    # Signatures.
    principal = card.school.principal_name
    signatures = Table(
        [
            ["", "", ""],
            [s("Class teacher", "sign"), "", s("Principal", "sign")],
            [s(teachers if card.lead_teachers else "", "sign_name"), "", s(principal, "sign_name")],
        ],
        colWidths=[width * 0.42, width * 0.16, width * 0.42],
        rowHeights=[34, None, None],
    )
    signatures.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (0, 0), 0.75, INK),
                ("LINEBELOW", (2, 0), (2, 0), 0.75, INK),
                ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                ("TOPPADDING", (0, 1), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 1), (-1, -1), 1),
            ]
        )
    )
    story.append(KeepTogether([Spacer(1, 18), signatures]))

    student_name = card.student.full_name
    return _build_pdf(
        story,
        pagesize=A4,
        font=s.regular,
        title=f"Report card — {student_name} — {term.name} {year.name}",
        author=card.school.name,
        footer=f"{card.school.name} · Confidential student record · "
        f"Generated {_day(card.generated_on)}",
    )


# ---------------------------------------------------------------------------------------------
# Roster: PDF
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RosterPdf:
    pdf: bytes
    student_ids: tuple[int, ...]  # the children it prints: its disclosure entries name them


def section_roster_pdf(*, section: Section, today: datetime.date | None = None) -> bytes:
    """A printable class roster (A4 landscape) with the teachers current on `today`; four
    queries whatever the class size. Medical notes stay out: a printed sheet travels."""
    return _section_roster_pdf(section=section, today=today or timezone.localdate()).pdf


def _section_roster_pdf(*, section: Section, today: datetime.date) -> RosterPdf:
    section = Section.objects.select_related("school", "grade_level", "academic_year").get(
        pk=section.pk
    )
    role_order = {role: n for n, role in enumerate(SectionTeacher.Role.values)}
    links = sorted(
        SectionTeacher.objects.filter(section=section)
        .filter(
            Q(starts_on__isnull=True) | Q(starts_on__lte=today),
            Q(ends_on__isnull=True) | Q(ends_on__gte=today),
        )
        .select_related("staff__user"),
        key=lambda link: (
            role_order.get(link.role, 99),
            link.staff.user.last_name,
            link.staff.user.first_name,
        ),
    )
    teachers = (
        ", ".join(
            f"{link.staff.user.get_full_name() or link.staff.user.get_username()} "
            f"({link.get_role_display()})"
            for link in links
        )
        or "none assigned"
    )
    rows = _section_roster_rows(section=section)

    s = _styles()
    page = landscape(A4)
    width = _content_width(page)
    details = [f"{section.grade_level.name} · {section.academic_year.name}"]
    if section.room:
        details[0] += f" · Room {section.room}"
    details.append(f"{len(rows)} student{'s' if len(rows) != 1 else ''}")
    story: list[Flowable] = [
        _header(
            s,
            school=section.school,
            title=f"Class roster: {section.name}",
            subtitle_lines=details,
            width=width,
        ),
        Spacer(1, 6),
        s.markup(f"<b>Teachers:</b> {escape(teachers)}", "body"),
        Spacer(1, 8),
    ]

    heads = [
        "#",
        "Student no.",
        "Last name",
        "First name",
        "Preferred",
        "Date of birth",
        "Status",
        "Primary guardian",
        "Phone",
        "Email",
    ]
    table_rows: list[list[Any]] = [[s(h, "th") for h in heads]]
    for n, row in enumerate(rows, start=1):
        st, guardian = row.student, row.guardian.guardian if row.guardian else None
        table_rows.append(
            [
                s(n, "cell"),
                s(st.student_number, "cell"),
                s(st.last_name, "cell"),
                s(st.first_name, "cell"),
                s(st.preferred_name, "cell"),
                s(_day(st.date_of_birth), "cell"),
                s(st.get_status_display(), "cell"),
                s(guardian.full_name if guardian else "—", "cell"),
                s((guardian.phone or guardian.alternate_phone) if guardian else "", "cell"),
                s(guardian.email if guardian else "", "cell"),
            ]
        )
    style = _grid_style(font=s.regular)
    if not rows:
        table_rows.append(
            [s("No students are enrolled in this class.", "empty")] + [""] * (len(heads) - 1)
        )
        style += [("SPAN", (0, 1), (-1, 1))]
    # Email gets the room: an address broken across lines is easy to mistype.
    fractions = (0.03, 0.09, 0.11, 0.10, 0.08, 0.09, 0.07, 0.13, 0.10, 0.20)
    roster = Table(table_rows, colWidths=[width * f for f in fractions], repeatRows=1)
    roster.setStyle(TableStyle(style))
    story.append(roster)

    pdf = _build_pdf(
        story,
        pagesize=page,
        font=s.regular,
        title=f"Class roster — {section.name} — {section.academic_year.name}",
        author=section.school.name,
        footer=f"{section.school.name} · Class roster {section.name} · Confidential · "
        f"Generated {_day(today)}",
    )
    return RosterPdf(pdf=pdf, student_ids=tuple(row.student.pk for row in rows))


# ---------------------------------------------------------------------------------------------
# Transcript: every term of every year
# ---------------------------------------------------------------------------------------------
def transcript_cards(*, student: Student) -> list[ReportCard]:
    """One report card's worth of results per term in which the student has graded work,
    oldest first (a few queries per term: a transcript is one document, not a page list)."""
    terms = (
        Term.objects.filter(assessments__grades__student=student)
        .select_related("academic_year")
        .distinct()
        .order_by("starts_on")
    )
    return [report_card_data(student=student, term=term) for term in terms]


def transcript_pdf(*, student: Student, cards: list[ReportCard]) -> bytes:
    """The student's transcript across all years as an A4 PDF: per term, each subject's
    weighted percentage and letter, and the term's overall average."""
    s = _styles()
    width = _content_width(A4)
    story: list[Flowable] = [
        _header(
            s,
            school=student.school,
            title="Academic transcript",
            width=width,
            subtitle_lines=[_legal_name(student), f"Student number {student.student_number}"],
        ),
        Spacer(1, 10),
    ]
    if not cards:
        story.append(s("No graded work is recorded for this student.", "body"))
    for card in cards:
        term = card.term
        story.append(s(f"{term.academic_year.name} · {term.name}", "h2"))
        rows: list[list[Any]] = [
            [s("Subject", "th"), s("Percentage", "th_center"), s("Grade", "th_center")]
        ]
        for result in card.subjects:
            if result.percentage is None:
                continue
            rows.append([s(result.subject.name), s(f"{result.percentage}%"), s(result.letter)])
        overall = f"{card.overall_percentage}%" if card.overall_percentage is not None else "—"
        rows.append([s("Overall", "value"), s(overall, "value"), s(card.overall_letter or "—")])
        table = Table(rows, colWidths=[width * 0.6, width * 0.2, width * 0.2], repeatRows=1)
        table.setStyle(TableStyle(_grid_style(font=s.regular)))
        story.append(table)
    return _build_pdf(
        story,
        pagesize=A4,
        font=s.regular,
        title=f"Transcript — {student.full_name}",
        author=student.school.name,
        footer=f"{student.school.name} · Academic transcript · Confidential student record · "
        f"Generated {_day(timezone.localdate())}",
    )


# ---------------------------------------------------------------------------------------------
# Cached documents
# ---------------------------------------------------------------------------------------------
# A report card or a roster PDF costs 50-300 ms of queries and layout, and staff reopen the
# same ones all day (a parent meeting, a trip). Each is cached under the versions of what it
# prints (students.cache), so a write to it makes the next request build a fresh one: a
# report card, under the school's records and that student's own attendance and grades (the
# register of another class leaves it cached); a roster, under the school's records only
# (enrolment, students' and guardians' details). Both are also cached under the day, since
# they print today's date and count attendance up to it. The lock of
# `school_cached` keeps a class of teachers opening the same roster from building it ten times.
def report_card_cached(
    *, school: School, student_id: int, term_id: int, today: datetime.date | None = None
) -> tuple[Student, Term, bytes]:
    """The student, the term and the term's report card as PDF bytes, from the cache when it
    is there. Raises Student.DoesNotExist or Term.DoesNotExist unless both belong to
    `school`: only what the school may print is ever built, hence cached. (A teacher's
    narrower scope is the caller's to check, on every request.)"""
    today = today or timezone.localdate()

    def build() -> tuple[Student, Term, bytes]:
        student = Student.objects.for_school(school).get(pk=student_id)
        term = Term.objects.for_school(school).get(pk=term_id)
        card = report_card_data(student=student, term=term, today=today)
        return student, term, report_card_pdf(card)

    # Per student: the register of another class, or another child's marks, leaves it cached.
    return student_cached(
        school.pk,
        student_id,
        f"report-card:{term_id}:{today.isoformat()}",
        build,
        settings.REPORTS_CACHE_TIMEOUT,
    )


def section_roster_pdf_cached(*, section: Section, today: datetime.date | None = None) -> RosterPdf:
    """The class roster as PDF bytes with the children it prints, from the cache when it is
    there."""
    today = today or timezone.localdate()
    return school_cached(
        section.school_id,
        f"roster-pdf:{section.pk}:{today.isoformat()}",
        lambda: _section_roster_pdf(section=section, today=today),
        settings.REPORTS_CACHE_TIMEOUT,
        topics=(RECORDS,),  # names, numbers and contacts: no attendance, no grades
    )
