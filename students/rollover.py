"""Year-end rollover: plan (a preview that writes nothing), then apply in one transaction."""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.history import bulk_history_record, history_snapshot, history_snapshot_of
from audit.services import Actor, as_user, audit_record

from .cache import school_cache_bump
from .models import (
    AcademicYear,
    Enrollment,
    GradeLevel,
    GradeLevelChange,
    School,
    Section,
    SectionTeacher,
    Student,
    StudentMove,
    Term,
)
from .signals import risky_operation

PROMOTED, RETAINED, GRADUATED, WITHDRAWN = "promoted", "retained", "graduated", "withdrawn"
OUTCOMES = (PROMOTED, RETAINED, GRADUATED, WITHDRAWN)


@dataclass(frozen=True)
class RolloverChange:
    student_id: int
    student_number: str
    name: str
    outcome: str
    from_level: str
    to_level: str  # "" when the student leaves
    from_section: str
    to_section: str  # "" when the student leaves or no sections are copied


@dataclass
class RolloverPlan:
    school: School
    from_year: AcademicYear
    name: str
    starts_on: datetime.date
    ends_on: datetime.date
    terms: list[tuple[str, datetime.date, datetime.date]]
    copy_sections: bool
    sections: list[tuple[str, str]]  # (name, grade level) created in the new year
    changes: list[RolloverChange] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(c.outcome for c in self.changes)
        return {outcome: counted.get(outcome, 0) for outcome in OUTCOMES}


def _shift(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def rollover_plan(
    *,
    school: School,
    from_year: AcademicYear,
    name: str,
    starts_on: datetime.date | None = None,
    ends_on: datetime.date | None = None,
    copy_sections: bool = True,
    exceptions: dict[int, str] | None = None,
) -> RolloverPlan:
    """What a rollover would do, student by student; writes nothing.

    Each student with an open enrollment in `from_year` moves up one grade level, or
    graduates from the highest one; `exceptions` maps student ids to another outcome
    (retained, graduated, withdrawn). Terms repeat the old year's pattern a year later.
    """
    exceptions = exceptions or {}
    bad = {o for o in exceptions.values() if o not in OUTCOMES}
    if bad:
        raise ValidationError(f"Unknown outcome(s): {', '.join(sorted(bad))}.")
    if from_year.school_id != school.pk:
        raise ValidationError("That academic year belongs to another school.")
    years = max(1, (starts_on.year - from_year.starts_on.year) if starts_on else 1)
    starts_on = starts_on or _shift(from_year.starts_on, years)
    ends_on = ends_on or _shift(from_year.ends_on, years)
    if starts_on <= from_year.starts_on or ends_on <= starts_on:
        raise ValidationError("The new year must start after the old one and end after it starts.")
    if AcademicYear.objects.for_school(school).filter(name=name).exists():
        raise ValidationError(f"The academic year {name} already exists.")
    terms = [
        (t.name, _shift(t.starts_on, years), _shift(t.ends_on, years))
        for t in Term.objects.filter(academic_year=from_year).order_by("starts_on")
    ]
    levels = list(GradeLevel.objects.for_school(school).order_by("order"))
    next_level = {lvl.pk: nxt for lvl, nxt in zip(levels, [*levels[1:], None], strict=True)}
    old_sections = list(
        Section.objects.filter(academic_year=from_year)
        .select_related("grade_level")
        .order_by("grade_level__order", "name")
    )
    by_level: dict[int, list[Section]] = {}
    for section in old_sections:
        by_level.setdefault(section.grade_level_id, []).append(section)

    plan = RolloverPlan(
        school=school,
        from_year=from_year,
        name=name,
        starts_on=starts_on,
        ends_on=ends_on,
        terms=terms,
        copy_sections=copy_sections,
        sections=[(s.name, s.grade_level.name) for s in old_sections] if copy_sections else [],
    )
    enrollments = (
        Enrollment.objects.filter(
            academic_year=from_year, ended_on__isnull=True, student__status=Student.Status.ACTIVE
        )
        .select_related("student__grade_level", "section__grade_level")
        .order_by("section__grade_level__order", "section__name", "student__last_name")
    )
    for enrollment in enrollments:
        student, section = enrollment.student, enrollment.section
        level = student.grade_level or section.grade_level
        default = PROMOTED if next_level.get(level.pk) else GRADUATED
        outcome = exceptions.get(student.pk, default)
        target = next_level.get(level.pk) if outcome == PROMOTED else level
        if outcome == PROMOTED and target is None:
            outcome = GRADUATED
        to_section = ""
        if outcome in (PROMOTED, RETAINED) and copy_sections and target is not None:
            # Same place within the level: 7B's pupils go to 8B, when there is one.
            siblings = by_level.get(section.grade_level_id, [section])
            position = siblings.index(section) if section in siblings else 0
            candidates = by_level.get(target.pk, [])
            if candidates:
                to_section = candidates[min(position, len(candidates) - 1)].name
        plan.changes.append(
            RolloverChange(
                student_id=student.pk,
                student_number=student.student_number,
                name=student.full_name,
                outcome=outcome,
                from_level=level.name,
                to_level=target.name if outcome in (PROMOTED, RETAINED) and target else "",
                from_section=section.name,
                to_section=to_section,
            )
        )
    unknown = set(exceptions) - {c.student_id for c in plan.changes}
    if unknown:
        raise ValidationError(
            f"{len(unknown)} exception(s) name students not enrolled in {from_year.name}."
        )
    return plan


def rollover_apply(*, plan: RolloverPlan, actor: Actor, make_current: bool = True) -> AcademicYear:
    """Carry out a plan in one transaction: the new year, its terms and classes (with their
    teachers), every student's outcome, and the switch of the current year. Announced first
    (`signals.risky_operation`): the backups app marks the moment before it."""
    risky_operation.send(
        sender=rollover_apply,
        reason="rollover",
        school_id=plan.school.pk,
        actor=actor,
        description=f"before the rollover of {plan.school} to {plan.name}",
    )
    return _rollover_apply(plan=plan, actor=actor, make_current=make_current)


@transaction.atomic
def _rollover_apply(*, plan: RolloverPlan, actor: Actor, make_current: bool) -> AcademicYear:
    school, old = plan.school, plan.from_year
    if AcademicYear.objects.for_school(school).filter(name=plan.name).exists():
        raise ValidationError(f"The academic year {plan.name} already exists.")
    if make_current:
        AcademicYear.objects.for_school(school).filter(is_current=True).update(is_current=False)
    year = AcademicYear(
        school=school,
        name=plan.name,
        starts_on=plan.starts_on,
        ends_on=plan.ends_on,
        is_current=make_current,
    )
    year.full_clean()
    year.save()
    Term.objects.bulk_create(
        Term(school=school, academic_year=year, name=n, starts_on=s, ends_on=e)
        for n, s, e in plan.terms
    )
    new_sections: dict[tuple[str, int], Section] = {}
    if plan.copy_sections:
        old_sections = list(Section.objects.filter(academic_year=old))
        created = Section.objects.bulk_create(
            Section(
                school=school,
                academic_year=year,
                grade_level_id=s.grade_level_id,
                name=s.name,
                room=s.room,
                capacity=s.capacity,
            )
            for s in old_sections
        )
        pairs = dict(zip([s.pk for s in old_sections], created, strict=True))
        today = timezone.localdate()
        # Lead and co-teachers carry over; a substitute's dated cover does not.
        SectionTeacher.objects.bulk_create(
            SectionTeacher(
                school=school,
                section=pairs[link.section_id],
                staff_id=link.staff_id,
                role=link.role,
            )
            for link in SectionTeacher.objects.filter(section__academic_year=old)
            .exclude(role=SectionTeacher.Role.SUBSTITUTE)
            .filter(Q(ends_on__isnull=True) | Q(ends_on__gte=today))
        )
        new_sections = {(s.name, s.grade_level_id): s for s in created}

    levels = {lvl.name: lvl for lvl in GradeLevel.objects.for_school(school)}
    students = Student.objects.in_bulk([c.student_id for c in plan.changes])
    # Bulk writes send no signals: the per-row history (old and new values) is kept by hand.
    student_before = history_snapshot_of(students.values(), ["grade_level", "status"])
    ending = Enrollment.objects.filter(
        academic_year=old, ended_on__isnull=True, student_id__in=students
    )
    ended_before = history_snapshot(ending, ["ended_on", "end_reason"])
    ending.update(ended_on=old.ends_on, end_reason="Year end")
    bulk_history_record(
        rows=Enrollment.objects.filter(pk__in=list(ended_before)),
        fields=["ended_on", "end_reason"],
        before=ended_before,
        actor=actor,
        operation="rollover",
    )
    history, enrollments, moves, changed = [], [], [], []
    recorder = as_user(actor)
    for change in plan.changes:
        student = students[change.student_id]
        from_level = levels.get(change.from_level)
        if change.outcome in (PROMOTED, RETAINED):
            to_level = levels[change.to_level]
            student.grade_level = to_level
            history.append(
                GradeLevelChange(
                    school=school,
                    student=student,
                    from_level=from_level,
                    to_level=to_level,
                    changed_on=plan.starts_on,
                    reason=change.outcome,
                    recorded_by=recorder,
                )
            )
            if change.to_section:
                enrollments.append(
                    Enrollment(
                        school=school,
                        student=student,
                        academic_year=year,
                        section=new_sections[(change.to_section, to_level.pk)],
                        started_on=plan.starts_on,
                    )
                )
        elif change.outcome == GRADUATED:
            student.status = Student.Status.GRADUATED  # alumni: kept, never deleted
            history.append(
                GradeLevelChange(
                    school=school,
                    student=student,
                    from_level=from_level,
                    to_level=None,
                    changed_on=old.ends_on,
                    reason=GradeLevelChange.Reason.GRADUATED,
                    recorded_by=recorder,
                )
            )
        else:
            student.status = Student.Status.WITHDRAWN
            moves.append(
                StudentMove(
                    school=school,
                    student=student,
                    kind=StudentMove.Kind.WITHDRAWAL,
                    reason_code=StudentMove.ReasonCode.OTHER,
                    effective_on=old.ends_on,
                    note="Withdrawn at year-end rollover",
                    recorded_by=recorder,
                )
            )
        student.updated_at = timezone.now()
        changed.append(student)
    Student.objects.bulk_update(changed, ["grade_level", "status", "updated_at"], batch_size=1000)
    GradeLevelChange.objects.bulk_create(history, batch_size=1000)
    Enrollment.objects.bulk_create(enrollments, batch_size=1000)
    StudentMove.objects.bulk_create(moves)
    bulk_history_record(
        rows=changed,
        fields=["grade_level", "status"],
        before=student_before,
        actor=actor,
        operation="rollover",
    )
    bulk_history_record(
        rows=enrollments,
        fields=["student", "section", "academic_year", "started_on"],
        before={},
        actor=actor,
        operation="rollover",
    )
    audit_record(
        actor=actor,
        action="rollover",
        target=year,
        changes={"from": old.name, **plan.counts, "sections": len(new_sections)},
    )
    school_cache_bump(school.pk)
    return year
