"""CSV export and import of students with their first two guardians.

The import is two steps so a registrar never half-imports a file: `student_import_parse` is a
dry run that reads the whole file and reports every problem (with its line and column) without
writing anything; `student_import_apply` then writes the plan all or nothing, in one
transaction. The export writes the same columns, so an exported file imports back unchanged.

Line numbers are the row numbers a spreadsheet shows (the header is line 1). They equal the
text file's line numbers unless a cell holds a line break, as multi-line addresses do.

Cell values are stripped of surrounding spaces on import, as the staff forms strip them. A
blank status or yes/no cell means the default for a new record and "no change" for an
existing one; every other blank cell clears the field.
"""

from __future__ import annotations

import calendar
import copy
import csv
import datetime
import difflib
import io
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError, IntegrityError, connection, models, transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from audit.history import bulk_history_record, history_snapshot_of
from audit.services import Actor, audit_record

from .cache import school_cache_bump
from .models import GradeLevel, Guardian, School, Student, StudentGuardian
from .signals import risky_operation

# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------
STUDENT_COLUMNS = [
    "student_number",
    "first_name",
    "middle_name",
    "last_name",
    "preferred_name",
    "date_of_birth",
    "gender",
    "grade_level",
    "status",
    "email",
    "phone",
    "address",
    "medical_notes",
]
# Guardian column suffix -> (model, field). `primary` is the link's `is_primary`.
GUARDIAN_COLUMN_FIELDS: dict[str, tuple[str, str]] = {
    "first_name": ("guardian", "first_name"),
    "last_name": ("guardian", "last_name"),
    "relationship": ("link", "relationship"),
    "email": ("guardian", "email"),
    "phone": ("guardian", "phone"),
    "primary": ("link", "is_primary"),
    "can_pick_up": ("link", "can_pick_up"),
}
GUARDIAN_SLOTS = (1, 2)
STUDENT_CSV_COLUMNS: list[str] = STUDENT_COLUMNS + [
    f"guardian{slot}_{suffix}" for slot in GUARDIAN_SLOTS for suffix in GUARDIAN_COLUMN_FIELDS
]
REQUIRED_COLUMNS = ["student_number", "first_name", "last_name", "date_of_birth"]
# A guardian can only be matched (by name) and linked (with a relationship) with these.
GUARDIAN_REQUIRED_SUFFIXES = ["first_name", "last_name", "relationship"]

YES_WORDS = {"yes", "y", "true", "1"}
NO_WORDS = {"no", "n", "false", "0"}

# Spreadsheets run a cell starting with one of these as a formula (CSV injection, OWASP). The
# export puts a single quote in front; the quote itself is escaped too, so the import can tell
# an escape from a value that really starts with a quote and the round trip stays exact.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_STARTS = FORMULA_TRIGGERS + ("'",)

# Rows fetched per round trip on export; prefetching runs once per chunk, so the number of
# queries grows by two per this many students, never per student.
EXPORT_CHUNK_SIZE = 500
# Rows per INSERT/UPDATE statement on import: a constant number of statements per this many.
IMPORT_BATCH_SIZE = 1000


# ---------------------------------------------------------------------------------------------
# Plan and result
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportProblem:
    """One thing wrong with an import file. `line` and `column` are None for the whole file.

    (Not called `ImportError`, which would shadow Python's built-in exception.)
    """

    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = "File" if self.line is None else f"Line {self.line}"
        if self.column:
            where += f", {self.column}"
        return f"{where}: {self.message}"


@dataclass
class GuardianImportRow:
    """A guardian named on a row; its dicts hold only the values the file gives."""

    slot: int
    guardian_fields: dict[str, Any]  # Guardian field -> value (names always, email/phone if given)
    link_fields: dict[str, Any]  # StudentGuardian field -> value (relationship always)

    @property
    def name_key(self) -> tuple[str, str]:
        return _name_key(self.guardian_fields["first_name"], self.guardian_fields["last_name"])


@dataclass
class StudentImportRow:
    """A valid row: the student's values as model values, and whom it updates, if anyone."""

    line: int
    student_number: str
    student_fields: dict[str, Any]  # Student field -> value, only for columns in the file
    guardians: list[GuardianImportRow]
    existing_student_id: int | None = None

    @property
    def is_update(self) -> bool:
        return self.existing_student_id is not None


@dataclass
class ImportPlan:
    """What an import would do, or why it cannot: the result of the dry run."""

    school_id: int | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[StudentImportRow] = field(default_factory=list)
    errors: list[ImportProblem] = field(default_factory=list)
    creates: int = 0
    updates: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.rows)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    guardians_created: int
    guardians_updated: int


class ImportFailed(ValueError):
    """The import wrote nothing; the message says why in words a registrar can act on."""


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
class TextSink(Protocol):
    """Anything with `write(str)`: an open text file, io.StringIO, or an HttpResponse."""

    def write(self, text: str, /) -> object: ...


def student_csv_export(*, students: QuerySet[Student], out: TextSink) -> int:
    """Write the students with their first two guardians (primary first) as CSV to `out`.

    The file starts with a UTF-8 byte order mark because Excel needs it to read UTF-8 (names
    such as José); the import accepts it. Queries do not grow per student: students and their
    guardian links are read in chunks. Returns the number of student rows written.
    """
    links = Prefetch(
        "guardian_links",
        queryset=StudentGuardian.objects.select_related("guardian").order_by(
            "-is_primary", "guardian__last_name", "guardian__first_name", "id"
        ),
        to_attr="csv_guardian_links",
    )
    rows = (
        students.select_related("grade_level")
        .prefetch_related(links)
        .iterator(chunk_size=EXPORT_CHUNK_SIZE)
    )
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(STUDENT_CSV_COLUMNS)
    count = 0
    for student in rows:
        writer.writerow([csv_cell(value) for value in _student_cells(student)])
        count += 1
    return count


def _student_cells(student: Student) -> list[str]:
    cells = [
        student.student_number,
        student.first_name,
        student.middle_name,
        student.last_name,
        student.preferred_name,
        student.date_of_birth.isoformat(),
        student.gender,
        student.grade_level.name if student.grade_level else "",
        student.status,
        student.email,
        student.phone,
        student.address,
        student.medical_notes,
    ]
    guardian_links: list[StudentGuardian] = student.csv_guardian_links  # type: ignore[attr-defined]
    for index in range(len(GUARDIAN_SLOTS)):
        if index < len(guardian_links):
            link = guardian_links[index]
            guardian = link.guardian
            cells += [
                guardian.first_name,
                guardian.last_name,
                link.relationship,
                guardian.email,
                guardian.phone,
                _yes_no(link.is_primary),
                _yes_no(link.can_pick_up),
            ]
        else:
            cells += [""] * len(GUARDIAN_COLUMN_FIELDS)
    return cells


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def csv_cell(value: object) -> str:
    """A cell value no spreadsheet will run as a formula (OWASP "CSV injection"): a leading
    quote goes before = + - @ tab CR, and before a quote, so the import can undo it exactly."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_ESCAPED_STARTS) else text


def _import_cell(raw: str) -> str:
    """The value of a cell: an escape from the export is removed, anything else is stripped."""
    if len(raw) >= 2 and raw[0] == "'" and raw[1].startswith(_ESCAPED_STARTS):
        return raw[1:]  # exactly what the export escaped: keep every character of it
    return raw.strip()


# ---------------------------------------------------------------------------------------------
# Import: the dry run
# ---------------------------------------------------------------------------------------------
class _FileProblem(Exception):
    """Internal: stops reading a file; becomes one file-level problem."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.problem = ImportProblem(line=line, column=None, message=message)


class _CellProblem(Exception):
    """Internal: a cell's value cannot be read; becomes one problem on its line and column."""


def student_import_parse(*, school: School, data: bytes) -> ImportPlan:
    """Read and check a whole import file without writing anything.

    Every problem is collected, not just the first, so the registrar can fix the file in one
    go. Rows whose student number already exists in the school are updates. Validation uses
    the models' own field validators and `clean()` so the rules cannot drift from the staff
    forms. Three queries whatever the file's size.
    """
    plan = ImportPlan(school_id=school.pk)
    try:
        text = _decode(data)
        records = _read_records(text)
        header = _read_header(records)
    except _FileProblem as exc:
        plan.errors.append(exc.problem)
        return plan
    plan.columns = [name for name in header if name]
    plan.errors.extend(_header_problems(header))
    if plan.errors:
        return plan
    data_records = [(line, cells) for line, cells in records[1:] if any(c.strip() for c in cells)]
    if not data_records:
        plan.errors.append(ImportProblem(None, None, "The file has a header but no student rows."))
        return plan

    context = _ParseContext.load(school, data_records, header)
    duplicates = _duplicate_numbers(data_records, header)
    for line, cells in data_records:
        row, problems = context.parse_row(line, cells)
        for other_lines in duplicates.get(line, []):
            problems.append(ImportProblem(line, "student_number", other_lines))
        if problems:
            plan.errors.extend(problems)
        elif row is not None:
            plan.rows.append(row)
    if not plan.errors:
        links = {
            student.pk: list(student.guardian_links.all()) for student in context.existing.values()
        }
        plan.errors.extend(_resolve_guardians(school, plan.rows, links).problems)
    plan.creates = sum(1 for row in plan.rows if not row.is_update)
    plan.updates = sum(1 for row in plan.rows if row.is_update)
    return plan


def _decode(data: bytes) -> str:
    if len(data) > settings.IMPORT_MAX_BYTES:
        raise _FileProblem(
            f"The file is {len(data):,} bytes; the limit is {settings.IMPORT_MAX_BYTES:,}. "
            "Split it into smaller files."
        )
    for signature, kind in (
        (b"PK\x03\x04", "an Excel workbook (.xlsx) or another ZIP archive"),
        (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)"),
        (b"%PDF", "a PDF document"),
    ):
        if data.startswith(signature):
            raise _FileProblem(
                f"This is {kind}, not a CSV file. In Excel choose File › Save As › "
                "“CSV UTF-8 (Comma delimited)” and upload that file."
            )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _FileProblem(
            "The file is saved as UTF-16 (Excel's “Unicode Text”). Save it as "
            "“CSV UTF-8 (Comma delimited)” and upload it again."
        )
    bom = b"\xef\xbb\xbf"
    skipped = len(bom) if data.startswith(bom) else 0
    try:
        text = data[skipped:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skipped
        line = data.count(b"\n", 0, offset) + 1
        line_start = data.rfind(b"\n", 0, offset) + 1
        before = data[line_start:offset].decode("utf-8", errors="replace")[-20:]
        after = f" after “{before}”" if before.strip() else ""
        raise _FileProblem(
            f"The file is not UTF-8 text: byte {offset} (0x{data[offset]:02X}, on line {line}"
            f"{after}) is not valid UTF-8. It was probably saved as Windows-1252 or Latin-1. "
            "In Excel choose File › Save As › “CSV UTF-8 (Comma delimited)” and upload again."
        ) from exc
    if not text.strip():
        raise _FileProblem("The file is empty.")
    if "\x00" in text:
        raise _FileProblem("The file holds binary data (NUL bytes); it is not a CSV file.")
    return text


def _read_records(text: str) -> list[tuple[int, list[str]]]:
    """The file's records, each with its spreadsheet row number (blank rows count too)."""
    first_line = text.splitlines()[0]
    # Excel in many European locales separates with semicolons; take the header's separator.
    delimiter = max((",", ";", "\t"), key=lambda d: (first_line.count(d), d == ","))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            records.append((len(records) + 1, cells))
    except csv.Error as exc:
        reason = str(exc)
        if "unexpected end of data" in reason:
            reason = 'a quoted value is never closed (a missing ")'
        raise _FileProblem(
            f"The file is not valid CSV at line {len(records) + 1} "
            f"(text line {reader.line_num}): {reason}.",
            line=len(records) + 1,
        ) from exc
    return records


def _read_header(records: list[tuple[int, list[str]]]) -> list[str]:
    header = [cell.strip().lstrip("\ufeff").lower() for cell in records[0][1]]
    if not set(header) & set(STUDENT_CSV_COLUMNS):
        shown = ", ".join(records[0][1][:4])
        raise _FileProblem(
            "The first line should be the header row naming the columns (student_number, "
            f"first_name, last_name, date_of_birth, …); it reads “{shown}”. Is the header "
            "missing, or is this not a student CSV file?",
            line=1,
        )
    return header


def _header_problems(header: list[str]) -> list[ImportProblem]:
    problems = []
    named = [name for name in header if name]
    repeated = sorted({name for name in named if named.count(name) > 1})
    if repeated:
        problems.append(
            ImportProblem(1, None, f"These columns appear more than once: {', '.join(repeated)}.")
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in named]
    if missing:
        problems.append(ImportProblem(1, None, f"Missing required columns: {', '.join(missing)}."))
    unknown = [name for name in dict.fromkeys(named) if name not in STUDENT_CSV_COLUMNS]
    if unknown:
        described = []
        for name in unknown:
            close = difflib.get_close_matches(name, STUDENT_CSV_COLUMNS, n=1)
            described.append(f"{name} (did you mean {close[0]}?)" if close else name)
        problems.append(
            ImportProblem(
                1, None, f"Unknown columns: {', '.join(described)}. Remove or rename them."
            )
        )
    for slot in GUARDIAN_SLOTS:
        given = [s for s in GUARDIAN_COLUMN_FIELDS if f"guardian{slot}_{s}" in named]
        lacking = [f"guardian{slot}_{s}" for s in GUARDIAN_REQUIRED_SUFFIXES if s not in given]
        if given and lacking:
            problems.append(
                ImportProblem(1, None, f"Guardian {slot} columns also need: {', '.join(lacking)}.")
            )
    return problems


def _duplicate_numbers(
    records: list[tuple[int, list[str]]], header: list[str]
) -> dict[int, list[str]]:
    """line -> message for every line whose student number another line repeats."""
    position = header.index("student_number")
    lines_by_number: dict[str, list[int]] = defaultdict(list)
    for line, cells in records:
        number = _import_cell(cells[position]) if position < len(cells) else ""
        if number:
            lines_by_number[number].append(line)
    messages: dict[int, list[str]] = {}
    for number, lines in lines_by_number.items():
        if len(lines) > 1:
            for line in lines:
                others = ", ".join(str(other) for other in lines if other != line)
                messages[line] = [
                    f"Student number {number} is also on line {others}; "
                    "each student may appear only once."
                ]
    return messages


@dataclass
class _ParseContext:
    school: School
    header: list[str]
    grade_levels: list[GradeLevel]
    existing: dict[str, Student]  # student_number -> student, with guardian links prefetched

    @classmethod
    def load(
        cls, school: School, records: list[tuple[int, list[str]]], header: list[str]
    ) -> _ParseContext:
        position = header.index("student_number")
        numbers = {_import_cell(cells[position]) for _, cells in records if position < len(cells)}
        numbers.discard("")
        existing = (
            Student.objects.for_school(school)
            .filter(student_number__in=numbers)
            .select_related("grade_level")
            .prefetch_related(
                Prefetch("guardian_links", StudentGuardian.objects.select_related("guardian"))
            )
        )
        return cls(
            school=school,
            header=header,
            grade_levels=list(GradeLevel.objects.for_school(school)),
            existing={student.student_number: student for student in existing},
        )

    def parse_row(
        self, line: int, cells: list[str]
    ) -> tuple[StudentImportRow | None, list[ImportProblem]]:
        problems: list[ImportProblem] = []

        def problem(column: str | None, message: str) -> None:
            problems.append(ImportProblem(line, column, message))

        if len(cells) < len(self.header) or any(c.strip() for c in cells[len(self.header) :]):
            problem(
                None,
                f"This row has {len(cells)} values but the header has "
                f"{len(self.header)} columns. Check for a missing or extra comma, "
                "or a quote that is not closed.",
            )
            return None, problems
        values: dict[str, str] = {}
        for name, raw in zip(self.header, cells, strict=False):
            if name:
                values[name] = _import_cell(raw)
            elif raw.strip():
                problem(None, f"The value “{raw.strip()}” is in a column with no header name.")

        number = values["student_number"]
        existing = self.existing.get(number) if number else None
        student = copy.copy(existing) if existing else Student(school=self.school)
        student_fields: dict[str, Any] = {}
        failed: set[str] = set()
        for column in STUDENT_COLUMNS:
            if column not in values:
                continue
            text = values[column]
            if column in REQUIRED_COLUMNS and not text:
                problem(column, "A value is required.")
                failed.add(column)
                continue
            try:
                value = self._student_value(column, text, is_update=existing is not None)
            except _CellProblem as exc:
                problem(column, str(exc))
                failed.add(column)
                continue
            if value is _UNCHANGED:
                continue
            student_fields[column] = value
            setattr(student, column, value)
        problems += _model_problems(
            line,
            student,
            checked=set(student_fields),
            column_for=lambda name: name if name in STUDENT_COLUMNS else None,
        )

        guardians: list[GuardianImportRow] = []
        for slot in GUARDIAN_SLOTS:
            guardian, guardian_problems = self._guardian(line, slot, values)
            problems += guardian_problems
            if guardian is not None:
                guardians.append(guardian)
        if len(guardians) == 2 and guardians[0].name_key == guardians[1].name_key:
            problem("guardian2_first_name", "Guardian 2 has the same name as guardian 1.")

        if problems:
            return None, problems
        return StudentImportRow(
            line=line,
            student_number=number,
            student_fields=student_fields,
            guardians=guardians,
            existing_student_id=existing.pk if existing else None,
        ), []

    def _student_value(self, column: str, text: str, *, is_update: bool) -> Any:
        if column == "date_of_birth":
            return _parse_date(text)
        if column == "grade_level":
            return self._grade_level(text) if text else None
        if column == "status":
            if not text:
                # Blank: the model's default for a new student, no change for an existing one.
                return _UNCHANGED if is_update else Student.Status.ACTIVE
            return _choice(text, Student.Status.choices)
        return text

    def _grade_level(self, name: str) -> GradeLevel:
        for level in self.grade_levels:
            if level.name == name:
                return level
        folded = [level for level in self.grade_levels if level.name.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        known = ", ".join(level.name for level in self.grade_levels) or "none yet"
        raise _CellProblem(f"Unknown grade level “{name}”. This school's grade levels: {known}.")

    def _guardian(
        self, line: int, slot: int, values: dict[str, str]
    ) -> tuple[GuardianImportRow | None, list[ImportProblem]]:
        prefix = f"guardian{slot}_"
        given = {
            suffix: values[prefix + suffix]
            for suffix in GUARDIAN_COLUMN_FIELDS
            if prefix + suffix in values
        }
        if not any(given.values()):
            return None, []  # nobody named: the student's guardians stay as they are
        problems: list[ImportProblem] = []
        guardian_fields: dict[str, Any] = {}
        link_fields: dict[str, Any] = {}
        for suffix, text in given.items():
            column = prefix + suffix
            model, name = GUARDIAN_COLUMN_FIELDS[suffix]
            if suffix in GUARDIAN_REQUIRED_SUFFIXES and not text:
                problems.append(
                    ImportProblem(
                        line, column, f"A value is required when guardian {slot} is given."
                    )
                )
                continue
            try:
                if suffix == "relationship":
                    value: Any = _choice(text, StudentGuardian.Relationship.choices)
                elif suffix in ("primary", "can_pick_up"):
                    value = _parse_yes_no(text)
                    if value is None:
                        continue  # blank: default for a new link, no change for an existing one
                else:
                    value = text
            except _CellProblem as exc:
                problems.append(ImportProblem(line, column, str(exc)))
                continue
            (guardian_fields if model == "guardian" else link_fields)[name] = value

        guardian = Guardian(school=self.school, **guardian_fields)
        link = StudentGuardian(school=self.school, **link_fields)
        link_columns = {
            name: suffix for suffix, (m, name) in GUARDIAN_COLUMN_FIELDS.items() if m == "link"
        }
        problems += _model_problems(
            line,
            guardian,
            checked=set(guardian_fields),
            column_for=lambda name: prefix + name if name in GUARDIAN_COLUMN_FIELDS else None,
        )
        problems += _model_problems(
            line,
            link,
            checked=set(link_fields),
            column_for=lambda name: prefix + link_columns[name] if name in link_columns else None,
        )
        if problems:
            return None, problems
        return GuardianImportRow(slot, guardian_fields, link_fields), []


_UNCHANGED = object()


def _parse_date(text: str) -> datetime.date:
    match = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
    if not match:
        if re.fullmatch(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}", text):
            raise _CellProblem(
                f"“{text}” is not in the form YYYY-MM-DD (for example 2010-12-31): day/month "
                "order differs between countries. If Excel reformatted the dates, format the "
                "column as yyyy-mm-dd before saving."
            )
        raise _CellProblem(
            f"“{text}” is not a date in the form YYYY-MM-DD (for example 2010-12-31)."
        )
    year, month, day = (int(part) for part in match.groups())
    if not 1 <= month <= 12:
        raise _CellProblem(f"“{text}” is not a real date: there is no month {month}.")
    days = calendar.monthrange(year, month)[1] if year >= 1 else 0
    if not 1 <= day <= days:
        raise _CellProblem(
            f"“{text}” is not a real date: {calendar.month_name[month]} {year} has {days} days."
        )
    return datetime.date(year, month, day)


def _parse_yes_no(text: str) -> bool | None:
    folded = text.casefold()
    if not folded:
        return None
    if folded in YES_WORDS:
        return True
    if folded in NO_WORDS:
        return False
    raise _CellProblem(f"“{text}” is not yes or no.")


def _choice(text: str, choices: Iterable[tuple[str, Any]]) -> str:
    """A choice by its stored value or its label, ignoring case (“Mother” or “mother”)."""
    folded = text.casefold()
    for value, label in choices:
        if folded in (str(value).casefold(), str(label).casefold()):
            return str(value)
    allowed = ", ".join(str(value) for value, _ in choices)
    raise _CellProblem(f"“{text}” is not one of: {allowed}.")


def _model_problems(
    line: int,
    instance: models.Model,
    *,
    checked: set[str],
    column_for: Callable[[str], str | None],
) -> list[ImportProblem]:
    """The model's own validation of the fields the file gives, as import problems.

    Foreign keys are resolved in bulk beforehand (their `validate` would query once per row),
    and uniqueness is checked across the whole file instead; the simple CHECK constraints are
    evaluated in Python for the same reason.
    """
    exclude = [f.name for f in instance._meta.concrete_fields if f.name not in checked]
    exclude += [f.name for f in instance._meta.concrete_fields if f.is_relation]
    problems = []
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            column = None if name == NON_FIELD_ERRORS else column_for(name)
            problems += [ImportProblem(line, column, str(message)) for message in messages]
    for name, message in _check_constraint_problems(instance, checked).items():
        problems.append(ImportProblem(line, column_for(name), message))
    return problems


_CHECK_OPERATORS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "gt": (operator.gt, "after"),
    "gte": (operator.ge, "on or after"),
    "lt": (operator.lt, "before"),
    "lte": (operator.le, "on or before"),
}


def _check_constraint_problems(instance: models.Model, checked: set[str]) -> dict[str, str]:
    """Field -> message for simple CHECK constraints (`field__gt=constant`, ANDed) it breaks.

    The database enforces them at apply time anyway; evaluating them here puts the problem in
    the dry-run report with its line, without a query per row. Constraints of other shapes are
    left to the database.
    """
    problems: dict[str, str] = {}
    for constraint in instance._meta.constraints:
        condition = getattr(constraint, "condition", None)
        if not isinstance(constraint, models.CheckConstraint) or condition is None:
            continue
        if condition.negated or condition.connector != models.Q.AND:
            continue
        for child in condition.children:
            if not isinstance(child, tuple):
                continue
            lookup, bound = child
            name, _, op = lookup.partition("__")
            if (
                op not in _CHECK_OPERATORS
                or name not in checked
                or hasattr(bound, "resolve_expression")  # F() and the like: the database's job
            ):
                continue
            value = getattr(instance, name, None)
            compare, words = _CHECK_OPERATORS[op]
            if value is not None and not compare(value, bound):
                model_field = instance._meta.get_field(name)
                label = str(getattr(model_field, "verbose_name", name)).capitalize()
                problems[name] = f"{label} must be {words} {bound}."
    return problems


def _name_key(first_name: str, last_name: str) -> tuple[str, str]:
    return (" ".join(first_name.split()).casefold(), " ".join(last_name.split()).casefold())


@dataclass
class _GuardianWork:
    new: list[tuple[StudentImportRow, Guardian, StudentGuardian]] = field(default_factory=list)
    guardian_updates: dict[int, Guardian] = field(default_factory=dict)
    link_updates: list[StudentGuardian] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)


def _resolve_guardians(
    school: School,
    rows: list[StudentImportRow],
    links_by_student: dict[int, list[StudentGuardian]],
) -> _GuardianWork:
    """Match each row's guardians to the student's current ones by name, or plan new ones.

    Used by the dry run (to report conflicts) and again by the apply, under lock, against the
    links as they are then. A guardian shared by two students in the file must be given the
    same details on both rows, or one row would silently overwrite the other.
    """
    work = _GuardianWork()
    seen: dict[int, tuple[int, dict[str, Any]]] = {}  # guardian pk -> (line, its values)
    for row in rows:
        links = links_by_student.get(row.existing_student_id or 0, [])
        for entry in row.guardians:
            link = next(
                (
                    link
                    for link in links
                    if _name_key(link.guardian.first_name, link.guardian.last_name)
                    == entry.name_key
                ),
                None,
            )
            if link is None:
                guardian = Guardian(school=school, **entry.guardian_fields)
                new_link = StudentGuardian(school=school, guardian=guardian, **entry.link_fields)
                work.new.append((row, guardian, new_link))
                continue
            guardian = link.guardian
            if guardian.pk in seen and seen[guardian.pk][1] != entry.guardian_fields:
                first_line = seen[guardian.pk][0]
                work.problems.append(
                    ImportProblem(
                        row.line,
                        f"guardian{entry.slot}_first_name",
                        f"{guardian.full_name} is also a guardian of the student on line "
                        f"{first_line}, but the two rows give different details; make them agree.",
                    )
                )
                continue
            seen[guardian.pk] = (row.line, entry.guardian_fields)
            for name, value in entry.guardian_fields.items():
                setattr(guardian, name, value)
            for name, value in entry.link_fields.items():
                setattr(link, name, value)
            work.guardian_updates[guardian.pk] = guardian
            work.link_updates.append(link)
    return work


# ---------------------------------------------------------------------------------------------
# Import: the apply
# ---------------------------------------------------------------------------------------------
def student_import_apply(*, school: School, plan: ImportPlan, actor: Actor) -> ImportResult:
    """Write a checked plan in one transaction: every row is saved, or none is.

    The students the plan touches are locked and compared with what the dry run saw, so a
    change made in between (a student added, renumbered or deleted) stops the import instead
    of slipping in. A constant number of statements per 1000 rows. Raises `ImportFailed` (a
    ValueError) with a readable reason when anything is refused; nothing is written then.
    """
    if plan.errors:
        raise ImportFailed(
            f"The file has {len(plan.errors)} problem(s); correct them and check it again."
        )
    if not plan.rows:
        raise ImportFailed("The file has no student rows to import.")
    if plan.school_id != school.pk:
        raise ImportFailed("This import was checked for another school.")
    risky_operation.send(
        sender=student_import_apply,
        reason="import",
        school_id=school.pk,
        actor=actor,
        description=f"before a CSV import of {len(plan.rows)} student(s) into {school}",
    )
    try:
        with transaction.atomic():
            result = _apply(school, plan, actor)
            # Foreign keys are checked at commit; check them now so a violation is reported
            # here even when the caller's own transaction commits later.
            connection.check_constraints(
                table_names=[
                    Student._meta.db_table,
                    Guardian._meta.db_table,
                    StudentGuardian._meta.db_table,
                ]
            )
    except IntegrityError as exc:
        raise ImportFailed(_integrity_message(exc, school=school, plan=plan)) from exc
    except DatabaseError as exc:
        raise ImportFailed(f"The database refused the import, so nothing was saved: {exc}") from exc
    return result


def _apply(school: School, plan: ImportPlan, actor: Actor) -> ImportResult:
    numbers = [row.student_number for row in plan.rows]
    # Rows locked now cannot change until commit. New numbers cannot be locked (no row yet);
    # a concurrent insert of one surfaces as the unique constraint's IntegrityError instead.
    current = {
        student.student_number: student
        for student in Student.objects.for_school(school)
        .filter(student_number__in=numbers)
        .select_for_update()
    }
    stale = []
    for row in plan.rows:
        student = current.get(row.student_number)
        if row.existing_student_id is None and student is not None:
            stale.append(f"student number {row.student_number} (line {row.line}) was added")
        elif row.existing_student_id is not None and (
            student is None or student.pk != row.existing_student_id
        ):
            stale.append(
                f"student number {row.student_number} (line {row.line}) was removed or renumbered"
            )
    if stale:
        raise ImportFailed(
            "The school's records changed after the file was checked: "
            + "; ".join(stale)
            + ". Nothing was imported; check the file again."
        )

    # Bulk writes send no signals: the per-row history (old and new values) is kept by hand.
    history_fields = sorted({name for row in plan.rows for name in row.student_fields})
    before = history_snapshot_of(current.values(), history_fields)
    now = timezone.now()
    created: list[Student] = []
    updated: list[Student] = []
    student_for_row: dict[int, Student] = {}
    update_fields: set[str] = set()
    for row in plan.rows:
        if row.is_update:
            student = current[row.student_number]
            for name, value in row.student_fields.items():
                setattr(student, name, value)
            student.updated_at = now  # bulk_update does not run auto_now
            update_fields.update(row.student_fields)
            updated.append(student)
        else:
            student = Student(school=school, **row.student_fields)
            created.append(student)
        student_for_row[row.line] = student
    Student.objects.bulk_create(created, batch_size=IMPORT_BATCH_SIZE)
    if updated:
        Student.objects.bulk_update(
            updated, sorted(update_fields | {"updated_at"}), batch_size=IMPORT_BATCH_SIZE
        )

    links: dict[int, list[StudentGuardian]] = defaultdict(list)
    if updated:
        for link in (
            StudentGuardian.objects.filter(student__in=updated)
            .select_related("guardian")
            .select_for_update(of=("self", "guardian"))
            .order_by("id")
        ):
            links[link.student_id].append(link)
    work = _resolve_guardians(school, plan.rows, links)
    if work.problems:
        raise ImportFailed(
            "The guardians changed after the file was checked: "
            + "; ".join(str(problem) for problem in work.problems)
        )
    Guardian.objects.bulk_create([g for _, g, _ in work.new], batch_size=IMPORT_BATCH_SIZE)
    new_links = []
    for row, guardian, link in work.new:
        link.student = student_for_row[row.line]
        link.guardian = guardian  # re-assign so the link picks up the new primary key
        new_links.append(link)
    StudentGuardian.objects.bulk_create(new_links, batch_size=IMPORT_BATCH_SIZE)
    entries = [entry for row in plan.rows for entry in row.guardians]
    guardian_fields = {name for entry in entries for name in entry.guardian_fields}
    link_fields = {name for entry in entries for name in entry.link_fields}
    if work.guardian_updates:
        Guardian.objects.bulk_update(
            list(work.guardian_updates.values()),
            sorted(guardian_fields),
            batch_size=IMPORT_BATCH_SIZE,
        )
    if work.link_updates:
        StudentGuardian.objects.bulk_update(
            work.link_updates, sorted(link_fields), batch_size=IMPORT_BATCH_SIZE
        )

    bulk_history_record(
        rows=[*created, *updated],
        fields=history_fields,
        before=before,
        actor=actor,
        operation="import",
    )
    bulk_history_record(
        rows=[g for _, g, _ in work.new],
        fields=["first_name", "last_name"],
        before={},
        actor=actor,
        operation="import",
    )
    bulk_history_record(
        rows=new_links,
        fields=["student", "guardian", "relationship"],
        before={},
        actor=actor,
        operation="import",
    )
    audit_record(
        actor=actor,
        action="import",
        target=school,
        school_id=school.pk,
        changes={"created": len(created), "updated": len(updated)},
    )
    school_cache_bump(school.pk)
    return ImportResult(
        created=len(created),
        updated=len(updated),
        guardians_created=len(work.new),
        guardians_updated=len(work.guardian_updates),
    )


def _integrity_message(exc: IntegrityError, *, school: School, plan: ImportPlan) -> str:
    """Name what the database refused, in the file's terms where it can be recognised."""
    diag = getattr(exc.__cause__, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or ""
    detail = getattr(diag, "message_detail", None) or str(exc)
    if constraint == "student_unique_number_per_school":
        match = re.search(r"\(school_id, student_number\)=\(\d+, (.*)\) already exists", detail)
        # Under row-level security PostgreSQL leaves the key out of the message: the number
        # is then the file's new one that appears twice in it or exists by now.
        number = match.group(1) if match else _number_taken(school, plan) or "in the file"
        return (
            f"Student number {number} was added by someone else while the import ran, so "
            "nothing was imported. Check the file again."
        )
    return (
        f"The database refused the import, so nothing was saved ({constraint or 'error'}): {detail}"
    )


def _number_taken(school: School, plan: ImportPlan) -> str | None:
    new = [row.student_number for row in plan.rows if row.existing_student_id is None]
    twice = [number for number, seen in Counter(new).items() if seen > 1]
    if twice:
        return twice[0]
    taken = Student.objects.for_school(school).filter(student_number__in=new)
    return taken.values_list("student_number", flat=True).order_by("student_number").first()
