"""Undo one school's mistake without rewinding the district.

A side cluster restored to a moment T (`recovery_restore`) holds the school's rows as they
were; the live database holds them as they are. `school_undo_plan` reads that school's
attendance, grades (with their assessments) and enrolments from both, optionally one class
only, and sorts the differences into rows deleted, changed and added since T.
`school_undo_apply` then writes the old rows back in one transaction acting for that school
alone: deleted rows re-created with their own ids, changed rows given their values at T, rows
added since T removed only on request; each row validated (`full_clean`) and audited with the
operator, the target and the restore point made just before, so the undo can be undone too.

Every other school, and every row of this one outside the chosen scope, is left as it is:
the writes act for this school only (row-level security refuses anything else), and they
touch only the rows the plan lists, which the transaction checks are still as shown.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Q

from audit.services import Actor, as_user, audit_record
from students.cache import school_cache_bump
from students.models import (
    AcademicYear,
    Assessment,
    AttendanceRecord,
    Enrollment,
    Grade,
    School,
    Section,
    Student,
    Subject,
    Term,
)
from students.row_security import acting_for
from students.services import assessment_save

from ..models import RestorePoint
from .physical import restore_point_create
from .recovery import RecoveryTarget, RestoredCluster, recovery_connect

SCOPES = ("attendance", "grades", "enrolments")
SCOPE_ALIASES = {"enrollments": "enrolments", "grade": "grades", "enrolment": "enrolments"}

DELETED, CHANGED, ADDED = "deleted", "changed", "added"

Row = dict[str, Any]


class SchoolUndoRefused(RuntimeError):
    """The undo cannot go on as asked; nothing was written."""


@dataclass(frozen=True)
class RecordKind:
    """One table of the school record an undo compares and writes back."""

    name: str
    scope: str  # the --only word that includes it
    model: type[models.Model]
    # The values compared and written back; bookkeeping (updated_at, recorded_at) is not.
    compared: tuple[str, ...]
    # What identifies the row when its id has changed: a mark deleted and entered again is
    # the same mark, and re-creating the old one would break the unique constraint.
    natural: tuple[str, ...]
    section_lookup: str  # the ORM path to the row's class
    section_sql: str  # the same, in SQL with one parameter

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def columns(self) -> list[str]:
        return [f.attname for f in self.model._meta.concrete_fields]


# In the order rows are written back: an assessment before its grades, an enrolment before
# the marks of its class. Rows added since T are removed first, in the reverse order.
KINDS = (
    RecordKind(
        name="assessments",
        scope="grades",
        model=Assessment,
        compared=("section_id", "subject_id", "term_id", "name", "max_score", "weight", "due_on"),
        natural=("section_id", "subject_id", "term_id", "name"),
        section_lookup="section_id",
        section_sql="section_id = %s",
    ),
    RecordKind(
        name="enrolments",
        scope="enrolments",
        model=Enrollment,
        compared=(
            "student_id",
            "academic_year_id",
            "section_id",
            "started_on",
            "ended_on",
            "end_reason",
        ),
        natural=("student_id", "section_id", "started_on"),
        section_lookup="section_id",
        section_sql="section_id = %s",
    ),
    RecordKind(
        name="grades",
        scope="grades",
        model=Grade,
        compared=("assessment_id", "student_id", "score", "comment"),
        natural=("assessment_id", "student_id"),
        section_lookup="assessment__section_id",
        section_sql="assessment_id IN (SELECT id FROM students_assessment WHERE section_id = %s)",
    ),
    RecordKind(
        name="attendance",
        scope="attendance",
        model=AttendanceRecord,
        compared=("student_id", "section_id", "date", "period", "status", "note"),
        natural=("student_id", "date", "period"),
        section_lookup="section_id",
        section_sql="section_id = %s",
    ),
)
KIND = {kind.name: kind for kind in KINDS}


def scopes_parse(text: str) -> tuple[str, ...]:
    """`--only attendance,grades,enrolments` (any of them, in any order; empty: all)."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    chosen = {SCOPE_ALIASES.get(w, w) for w in words}
    unknown = chosen - set(SCOPES)
    if unknown:
        raise SchoolUndoRefused(
            f"--only takes {', '.join(SCOPES)}; not {', '.join(sorted(unknown))}."
        )
    return tuple(s for s in SCOPES if s in chosen) or SCOPES


@dataclass
class RowChange:
    kind: RecordKind
    action: str  # DELETED, CHANGED or ADDED
    then: Row | None  # at T (None: added since)
    now: Row | None  # live (None: deleted since)
    conflict: str = ""

    @property
    def row(self) -> Row:
        """The values that describe it: as they were, or for a row added since, as they are."""
        found = self.then if self.then is not None else self.now
        assert found is not None  # noqa: S101 - a change has one side at least
        return found

    @property
    def differing(self) -> list[str]:
        if self.then is None or self.now is None:
            return []
        return [name for name in self.kind.compared if self.then[name] != self.now[name]]

    def fingerprint(self) -> tuple[Any, ...]:
        now = tuple(self.now[n] for n in self.kind.compared) if self.now else None
        then_id = self.then["id"] if self.then else None
        now_id = self.now["id"] if self.now else None
        return (self.kind.name, self.action, then_id, now_id, now)


@dataclass(frozen=True)
class StudentLabel:
    number: str
    name: str
    status_now: str | None  # None: the student no longer exists
    status_then: str | None


@dataclass
class SchoolUndoPlan:
    """What differs for one school between T and now, with what a reader needs to see it."""

    school: School
    target: RecoveryTarget
    recovered_to: datetime.datetime | None
    scopes: tuple[str, ...]
    section_id: int | None
    section_name: str
    changes: list[RowChange]
    # The rows at T, kept to check in the write's transaction that the live side is still
    # what was shown (and to build the changes again from it).
    then_rows: dict[str, dict[int, Row]]
    students: dict[int, StudentLabel]
    sections: dict[int, str]
    assessments: dict[int, str]
    assessment_sections: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def kinds(self) -> list[RecordKind]:
        return [kind for kind in KINDS if kind.scope in self.scopes]

    def counts(self) -> dict[str, dict[str, int]]:
        counted = {kind.name: dict.fromkeys((DELETED, CHANGED, ADDED), 0) for kind in self.kinds}
        for change in self.changes:
            counted[change.kind.name][change.action] += 1
        return counted

    @property
    def conflicts(self) -> list[RowChange]:
        return [c for c in self.changes if c.conflict]

    def student(self, student_id: int | None) -> str:
        if student_id is None:
            return "-"
        label = self.students.get(student_id)
        return f"{label.number} {label.name}" if label else f"student #{student_id}"

    def section(self, section_id: int | None) -> str:
        return self.sections.get(section_id or 0, f"class #{section_id}")

    def assessment(self, assessment_id: int | None) -> str:
        return self.assessments.get(assessment_id or 0, f"assessment #{assessment_id}")

    def value(self, name: str, value: Any) -> str:
        """A value as a reader knows it: a class by its name, a student by number and name."""
        if value is None or value == "":
            return "-"
        lookup: dict[str, Callable[[Any], str]] = {
            "student_id": self.student,
            "section_id": self.section,
            "assessment_id": self.assessment,
        }
        if name in lookup:
            return lookup[name](value)
        return str(value)

    def describe(self, change: RowChange) -> str:
        """One line about the row: who, which class, what (its values at T when it had any)."""
        row = change.row
        kind = change.kind.name
        if kind == "assessments":
            due = f", due {row['due_on']}" if row["due_on"] else ""
            return (
                f"{row['name']} · {self.section(row['section_id'])} · "
                f"max {row['max_score']}, weight {row['weight']}{due}"
            )
        if kind == "enrolments":
            ends = f" to {row['ended_on']}" if row["ended_on"] else ""
            reason = f" ({row['end_reason']})" if row["end_reason"] else ""
            return (
                f"{self.student(row['student_id'])} · {self.section(row['section_id'])} · "
                f"from {row['started_on']}{ends}{reason}"
            )
        if kind == "grades":
            comment = f' "{row["comment"]}"' if row["comment"] else ""
            return (
                f"{self.student(row['student_id'])} · "
                f"{self.section(self.assessment_sections.get(row['assessment_id']))} · "
                f"{self.assessment(row['assessment_id'])} · {row['score']}/{row['max_score']}"
                f"{comment}"
            )
        note = f' "{row["note"]}"' if row["note"] else ""
        period = "day" if row["period"] == 0 else f"p{row['period']}"
        return (
            f"{row['date']} {period} · {self.student(row['student_id'])} · "
            f"{self.section(row['section_id'])} · {row['status']}{note}"
        )

    def refusal(self, conflicts: list[RowChange]) -> str:
        """Why nothing was (or will be) written: the rows that cannot go back, and what to do."""
        shown = conflicts[:10]
        lines = [
            f"{len(conflicts)} row(s) of {self.school.code} cannot go back as they were, so "
            "nothing was written:"
        ]
        lines += [
            f"  {c.kind.name} #{c.row['id']} ({self.describe(c)}): {c.conflict}" for c in shown
        ]
        if len(conflicts) > len(shown):
            lines.append(f"  ... and {len(conflicts) - len(shown)} more")
        lines.append(
            "Narrow the undo (--section, --only), put right what changed, or run it with "
            "--skip-conflicts to write the other rows and leave these as they are."
        )
        return "\n".join(lines)


@dataclass
class SchoolUndoOutcome:
    restore_point: str
    recreated: int = 0
    restored: int = 0
    removed: int = 0
    skipped: list[tuple[RowChange, str]] = field(default_factory=list)
    seconds: float = 0.0


# --- reading ---------------------------------------------------------------------------------
def _side_connection(cluster: RestoredCluster) -> Any:
    """The platform's database in the side cluster, as its superuser over its socket (the
    restored cluster's roles are the live one's; the superuser reads every school's rows,
    and this module asks only for one). Read-only: the side cluster is evidence."""
    from psycopg.rows import dict_row

    conn = recovery_connect(cluster, str(settings.DATABASES["default"]["NAME"]))
    conn.row_factory = dict_row
    conn.execute("SET default_transaction_read_only = on")
    return conn


def _check_same_schema(side: Any) -> None:
    """The school record's migrations must be the same at T as now: rows of another shape
    cannot be written back through this release's models."""
    query = "SELECT name FROM django_migrations WHERE app = 'students'"
    then = {r["name"] for r in side.execute(query).fetchall()}
    with connection.cursor() as cursor:
        cursor.execute(query)
        now = {r[0] for r in cursor.fetchall()}
    if then != now:
        since = sorted(now - then) or sorted(then - now)
        raise SchoolUndoRefused(
            "The school record's tables changed between the target and now (migrations "
            f"{', '.join(since)}): an undo cannot write rows of another shape back. Inspect "
            "the side cluster and copy what is needed by hand."
        )


def _school_at(side: Any, school: School) -> None:
    found = side.execute(
        "SELECT id, code FROM students_school WHERE id = %s", [school.pk]
    ).fetchone()
    if found is None or found["code"] != school.code:
        raise SchoolUndoRefused(f"{school.code} did not exist yet at the target.")


def _section_at(side: Any, school: School, wanted: str) -> tuple[int, str]:
    """The class `wanted` (an id, or a name) as it was at T; a name used every year means the
    one of the year current then."""
    wanted = wanted.strip()
    rows = side.execute(
        "SELECT s.id, s.name, y.name AS year, y.is_current FROM students_section s "
        "JOIN students_academicyear y ON y.id = s.academic_year_id "
        "WHERE s.school_id = %s AND (s.id = %s OR s.name = %s) ORDER BY y.starts_on DESC",
        [school.pk, int(wanted) if wanted.isdigit() else -1, wanted],
    ).fetchall()
    if wanted.isdigit():
        rows = [r for r in rows if r["id"] == int(wanted)] or rows
    if len(rows) > 1:
        rows = [r for r in rows if r["is_current"]] or rows
    if not rows:
        raise SchoolUndoRefused(f"{school.code} had no class {wanted!r} at the target.")
    if len(rows) > 1:
        listed = ", ".join(f"#{r['id']} ({r['year']})" for r in rows)
        raise SchoolUndoRefused(
            f"{wanted!r} names several classes of {school.code} at the target: {listed}. "
            "Give --section with the class's id."
        )
    return int(rows[0]["id"]), f"{rows[0]['name']} ({rows[0]['year']})"


def _side_rows(
    side: Any, kind: RecordKind, school: School, section_id: int | None
) -> dict[int, Row]:
    columns = ", ".join(f'"{c}"' for c in kind.columns)
    sql = f'SELECT {columns} FROM "{kind.table}" WHERE school_id = %s'  # noqa: S608 - names from the models
    params: list[Any] = [school.pk]
    if section_id is not None:
        sql += f" AND {kind.section_sql}"
        params.append(section_id)
    return {r["id"]: dict(r) for r in side.execute(sql + " ORDER BY id", params).fetchall()}


def _live_rows(
    kind: RecordKind,
    school: School,
    section_id: int | None,
    then_ids: Iterable[int],
    *,
    lock: bool = False,
) -> dict[int, Row]:
    rows = kind.model._default_manager.filter(school_id=school.pk)
    if section_id is not None:
        # The class's rows, and the rows it had at T wherever they are now: a mark moved to
        # another class since is a change to undo, not a deleted row to make twice.
        rows = rows.filter(Q(**{kind.section_lookup: section_id}) | Q(pk__in=list(then_ids)))
    if lock:
        rows = rows.select_for_update(of=("self",))
    return {r["id"]: r for r in rows.order_by("pk").values(*kind.columns)}


def _compare(
    kind: RecordKind, then: dict[int, Row], now: dict[int, Row]
) -> tuple[list[RowChange], dict[int, int]]:
    """The changes of one table, and which live row each row at T became (by id first, then
    by natural key among the rows left over on both sides)."""
    pairs: dict[int, int] = {}
    unmatched = dict(now)
    leftover = []
    for pk in then:
        if pk in unmatched:
            pairs[pk] = pk
            del unmatched[pk]
        else:
            leftover.append(pk)
    by_key: dict[tuple[Any, ...], int] = {}
    ambiguous = set()
    for pk, row in unmatched.items():
        key = tuple(row[n] for n in kind.natural)
        if key in by_key:
            ambiguous.add(key)
        by_key[key] = pk
    changes = []
    for pk in leftover:
        key = tuple(then[pk][n] for n in kind.natural)
        if key in by_key and key not in ambiguous:
            pairs[pk] = by_key.pop(key)
            del unmatched[pairs[pk]]
        else:
            changes.append(RowChange(kind, DELETED, then[pk], None))
    for then_pk, now_pk in pairs.items():
        change = RowChange(kind, CHANGED, then[then_pk], now[now_pk])
        if change.differing:
            changes.append(change)
    changes += [RowChange(kind, ADDED, None, row) for row in unmatched.values()]
    changes.sort(key=lambda c: ((DELETED, CHANGED, ADDED).index(c.action), c.row["id"]))
    return changes, pairs


def _changes(
    then_rows: dict[str, dict[int, Row]],
    school: School,
    kinds: Iterable[RecordKind],
    section_id: int | None,
    *,
    lock: bool = False,
) -> list[RowChange]:
    changes: list[RowChange] = []
    assessment_pairs: dict[int, int] = {}
    for kind in kinds:
        then = then_rows[kind.name]
        if kind.name == "grades" and assessment_pairs:
            # A grade of an assessment deleted and made again belongs to the new one.
            then = {
                pk: {
                    **row,
                    "assessment_id": assessment_pairs.get(
                        row["assessment_id"], row["assessment_id"]
                    ),
                }
                for pk, row in then.items()
            }
        now = _live_rows(kind, school, section_id, then, lock=lock)
        found, pairs = _compare(kind, then, now)
        if kind.name == "assessments":
            assessment_pairs = pairs
        changes += found
    return changes


@dataclass
class _Live:
    """What the rows at T refer to, as it is now (for the conflicts)."""

    students: dict[int, str]  # id -> status
    sections: set[int]
    years: set[int]
    subjects: set[int]
    terms: set[int]
    assessments: set[int]


def _live_refs(school: School, student_ids: set[int]) -> _Live:
    def ids(model: type[models.Model]) -> set[int]:
        return set(model._default_manager.filter(school_id=school.pk).values_list("pk", flat=True))

    return _Live(
        students=dict(
            Student.objects.filter(school_id=school.pk, pk__in=student_ids).values_list(
                "pk", "status"
            )
        ),
        sections=ids(Section),
        years=ids(AcademicYear),
        subjects=ids(Subject),
        terms=ids(Term),
        assessments=ids(Assessment),
    )


def _conflicts(plan: SchoolUndoPlan, live: _Live) -> None:
    """Mark the rows that cannot go back as they were: what they refer to is gone, or their
    student has left the school since T (a withdrawn or transferred student's record is
    read-only). `full_clean` checks the rest as each row is written."""
    restorable_assessments = set(live.assessments)
    for change in plan.changes:
        change.conflict = ""
        if change.action == ADDED or change.then is None:
            continue
        row = change.then
        reason = ""
        student_id = row.get("student_id")
        if student_id is not None:
            label = plan.students.get(student_id)
            status = live.students.get(student_id)
            if status is None:
                reason = f"the student {plan.student(student_id)} no longer exists"
            elif (
                status != Student.Status.ACTIVE
                and label is not None
                and status != label.status_then
            ):
                reason = (
                    f"{plan.student(student_id)} is {status} since the target (was "
                    f"{label.status_then}): their record is read-only"
                )
        missing = [
            (name, what)
            for name, what, present in (
                ("section_id", "class", live.sections),
                ("academic_year_id", "academic year", live.years),
                ("subject_id", "subject", live.subjects),
                ("term_id", "term", live.terms),
            )
            if name in row and row[name] not in present
        ]
        if not reason and missing:
            name, what = missing[0]
            reason = f"its {what} {plan.value(name, row[name])} was deleted since the target"
        if (
            not reason
            and "assessment_id" in row
            and row["assessment_id"] not in (restorable_assessments)
        ):
            reason = f"its assessment {plan.assessment(row['assessment_id'])} cannot be restored"
        change.conflict = reason
        if change.kind.name == "assessments" and change.action == DELETED and not reason:
            restorable_assessments.add(row["id"])


def _labels(side: Any, plan: SchoolUndoPlan) -> None:
    student_ids = {
        row["student_id"]
        for c in plan.changes
        for row in (c.then, c.now)
        if row is not None and row.get("student_id") is not None
    }
    then = {
        r["id"]: r
        for r in side.execute(
            "SELECT id, student_number, first_name, preferred_name, last_name, status "
            "FROM students_student WHERE school_id = %s AND id = ANY(%s)",
            [plan.school.pk, sorted(student_ids)],
        ).fetchall()
    }
    now = {
        r["id"]: r
        for r in Student.objects.filter(school_id=plan.school.pk, pk__in=student_ids).values(
            "id", "student_number", "first_name", "preferred_name", "last_name", "status"
        )
    }
    for pk in student_ids:
        row = now.get(pk) or then.get(pk)
        if row is None:
            continue
        plan.students[pk] = StudentLabel(
            number=row["student_number"],
            name=f"{row['preferred_name'] or row['first_name']} {row['last_name']}",
            status_now=now[pk]["status"] if pk in now else None,
            status_then=then[pk]["status"] if pk in then else None,
        )
    for r in side.execute(
        "SELECT id, name FROM students_section WHERE school_id = %s", [plan.school.pk]
    ).fetchall():
        plan.sections[r["id"]] = r["name"]
    plan.sections.update(Section.objects.filter(school_id=plan.school.pk).values_list("pk", "name"))
    for r in side.execute(
        "SELECT id, name, section_id FROM students_assessment WHERE school_id = %s",
        [plan.school.pk],
    ).fetchall():
        plan.assessments[r["id"]] = r["name"]
        plan.assessment_sections[r["id"]] = r["section_id"]
    for pk, name, section_id in Assessment.objects.filter(school_id=plan.school.pk).values_list(
        "pk", "name", "section_id"
    ):
        plan.assessments[pk] = name
        plan.assessment_sections[pk] = section_id


def school_undo_plan(
    *,
    cluster: RestoredCluster,
    school: School,
    scopes: tuple[str, ...] = SCOPES,
    section: str = "",
) -> SchoolUndoPlan:
    """What differs for `school` between the side cluster's moment and now, in `scopes`
    (attendance, grades with their assessments, enrolments), for one class when `section`
    (an id, or a name) is given. Reads only; raises SchoolUndoRefused when the comparison
    cannot be made (the school or class did not exist then, the tables changed shape)."""
    clock = time.monotonic()
    with _side_connection(cluster) as side, acting_for([school.pk]):
        _check_same_schema(side)
        _school_at(side, school)
        section_id, section_name = _section_at(side, school, section) if section else (None, "")
        kinds = [kind for kind in KINDS if kind.scope in scopes]
        then_rows = {kind.name: _side_rows(side, kind, school, section_id) for kind in kinds}
        plan = SchoolUndoPlan(
            school=school,
            target=cluster.target,
            recovered_to=cluster.recovered_to,
            scopes=scopes,
            section_id=section_id,
            section_name=section_name,
            changes=_changes(then_rows, school, kinds, section_id),
            then_rows=then_rows,
            students={},
            sections={},
            assessments={},
        )
        _labels(side, plan)
        _conflicts(plan, _live_refs(school, set(plan.students)))
    plan.seconds = round(time.monotonic() - clock, 2)
    return plan


# --- writing ---------------------------------------------------------------------------------
def _text(value: Any) -> Any:
    return None if value is None else str(value)


# What a refused constraint means for an undo, in the school's words.
CONSTRAINT_HINTS = {
    "enrollment_one_active_per_year": (
        "the student has another open enrolment that year (--also-remove-added removes one "
        "made since the moment first)"
    ),
    "grade_score_within_max": "the score is above the assessment's maximum now",
}


def _messages(exc: ValidationError) -> str:
    text = " ".join(exc.messages)
    hints = [hint for name, hint in CONSTRAINT_HINTS.items() if name in text]
    return f"{text.rstrip('.')}: {'; '.join(hints)}." if hints else text


class _RowRefused(Exception):
    pass


def _recreate(change: RowChange, users: set[int]) -> models.Model:
    assert change.then is not None  # noqa: S101 - a deleted row has its values at T
    values = dict(change.then)
    if "recorded_by_id" in values and values["recorded_by_id"] not in users:
        values["recorded_by_id"] = None  # an account deleted since: the row stays unsigned
    if change.kind.model is Grade:
        values["max_score"] = _assessment_max(values["assessment_id"])
    obj = change.kind.model(**values)
    obj.full_clean()
    obj.save(force_insert=True)
    return obj


def _assessment_max(assessment_id: int) -> Any:
    found = Assessment.objects.filter(pk=assessment_id).values_list("max_score", flat=True).first()
    if found is None:
        raise _RowRefused(f"its assessment #{assessment_id} does not exist")
    return found


def _restore(change: RowChange, actor: Actor) -> models.Model:
    assert change.then is not None and change.now is not None  # noqa: S101
    obj = change.kind.model._default_manager.get(pk=change.now["id"])
    for name in change.differing:
        setattr(obj, name, change.then[name])
    if isinstance(obj, Assessment):
        # The service keeps the grades' copy of the maximum in step, and refuses a maximum
        # below a score recorded since.
        return assessment_save(assessment=obj, actor=actor)
    if isinstance(obj, Grade):
        obj.max_score = _assessment_max(obj.assessment_id)
    obj.full_clean()
    obj.save()
    return obj


def school_undo_apply(
    *,
    plan: SchoolUndoPlan,
    actor: Actor,
    remove_added: bool = False,
    skip_conflicts: bool = False,
    say: Callable[[str], None] = lambda message: None,
) -> SchoolUndoOutcome:
    """Write the plan back: rows deleted since T re-created with their ids, rows changed
    since T given their values at T, rows added since T removed when `remove_added`. One
    transaction acting for the plan's school alone, after a restore point (so the undo can be
    undone). A row that cannot go back (a conflict: its student left, its class is gone,
    `full_clean` refuses it) rolls everything back with SchoolUndoRefused naming it, unless
    `skip_conflicts`, which leaves that row as it is and records why. The live rows must
    still be as the plan showed them, or nothing is written.

    Queries: about ten per row (`full_clean`'s foreign-key and unique checks, the write,
    its model history, its audit entry): a class's wiped quiz is well under a second; a
    class's 120 days of registers and 6 assessments (3,780 rows) took 39 s on a busy
    two-core test machine, all in the one transaction.
    """
    from auditlog.context import set_actor

    clock = time.monotonic()
    school = plan.school
    if plan.conflicts and not skip_conflicts:
        raise SchoolUndoRefused(plan.refusal(plan.conflicts))
    point = restore_point_create(
        reason=RestorePoint.Reason.RESTORE,
        description=f"before undoing {school.code} to {plan.target}",
        school_id=school.pk,
        actor=actor,
    )
    assert point is not None  # noqa: S101 - PITR is on: the side cluster came from it
    outcome = SchoolUndoOutcome(restore_point=point.name)
    context = {
        "target": str(plan.target),
        "recovered_to": _text(plan.recovered_to),
        "restore_point": point.name,
    }
    kinds = plan.kinds
    with acting_for([school.pk]), set_actor(as_user(actor)), transaction.atomic():
        # Locked, then compared again with what was shown: a teacher's write in between
        # would otherwise be overwritten unseen.
        fresh = _changes(plan.then_rows, school, kinds, plan.section_id, lock=True)
        if {c.fingerprint() for c in fresh} != {c.fingerprint() for c in plan.changes}:
            raise SchoolUndoRefused(
                f"{school.code}'s rows changed after the differences were read: nothing was "
                "written. Run the undo again to see them as they are now."
            )
        plan.changes = fresh
        _conflicts(plan, _live_refs(school, set(plan.students)))
        if plan.conflicts and not skip_conflicts:
            raise SchoolUndoRefused(plan.refusal(plan.conflicts))
        signed: set[int] = {
            c.then["recorded_by_id"]
            for c in plan.changes
            if c.then is not None and c.then.get("recorded_by_id") is not None
        }
        users = set(get_user_model().objects.filter(pk__in=signed).values_list("pk", flat=True))
        # Rows added since T go first (a grade before its assessment), so that a restored
        # row does not meet the one that replaced it; then the rows at T, in KINDS order.
        order = (
            [c for kind in reversed(kinds) for c in plan.changes if c.kind is kind]
            if remove_added
            else []
        )
        order = [c for c in order if c.action == ADDED]
        order += [c for kind in kinds for c in plan.changes if c.kind is kind and c.action != ADDED]
        for change in order:
            if change.conflict:
                outcome.skipped.append((change, change.conflict))
                continue
            try:
                _write_one(change, plan, actor, users, context, outcome)
            except (ValidationError, _RowRefused, IntegrityError) as exc:
                reason = _messages(exc) if isinstance(exc, ValidationError) else str(exc)
                if skip_conflicts and not isinstance(exc, IntegrityError):
                    outcome.skipped.append((change, reason))
                    continue
                change.conflict = reason
                raise SchoolUndoRefused(plan.refusal([change])) from exc
        outcome.seconds = round(time.monotonic() - clock, 2)
        audit_record(
            actor=actor,
            action="school_undo",
            target=school,
            changes={
                **context,
                "scopes": list(plan.scopes),
                "section": plan.section_name or None,
                "recreated": outcome.recreated,
                "restored": outcome.restored,
                "removed": outcome.removed,
                "kept_added": 0
                if remove_added
                else sum(1 for c in plan.changes if c.action == ADDED),
                "skipped": [
                    {"table": c.kind.name, "id": c.row["id"], "reason": why}
                    for c, why in outcome.skipped
                ],
            },
        )
        # Every figure of the school may have moved: the dashboard, rosters, report cards.
        school_cache_bump(school.pk)
    say(f"undo of {school.code} written in {outcome.seconds} s")
    return outcome


def _write_one(
    change: RowChange,
    plan: SchoolUndoPlan,
    actor: Actor,
    users: set[int],
    context: dict[str, Any],
    outcome: SchoolUndoOutcome,
) -> None:
    if change.action == ADDED:
        assert change.now is not None  # noqa: S101
        obj = change.kind.model._default_manager.get(pk=change.now["id"])
        audit_record(
            actor=actor,
            action="school_undo_remove",
            target=obj,
            changes={**context, "values": {n: _text(change.now[n]) for n in change.kind.compared}},
        )
        obj.delete()
        outcome.removed += 1
    elif change.action == DELETED:
        obj = _recreate(change, users)
        audit_record(
            actor=actor,
            action="school_undo_recreate",
            target=obj,
            changes={
                **context,
                "values": {n: _text(getattr(obj, n)) for n in change.kind.compared},
            },
        )
        outcome.recreated += 1
    else:
        assert change.then is not None and change.now is not None  # noqa: S101
        fields = {n: [_text(change.now[n]), _text(change.then[n])] for n in change.differing}
        obj = _restore(change, actor)
        audit_record(
            actor=actor,
            action="school_undo_restore",
            target=obj,
            changes={**context, "fields": fields},
        )
        outcome.restored += 1
