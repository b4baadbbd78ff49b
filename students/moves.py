"""Students leaving a school: withdrawal, and transfer to another school of the district."""

from __future__ import annotations

import datetime

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import Actor, as_user, audit_record

from .cache import school_cache_bump
from .models import (
    Enrollment,
    GradeLevel,
    Guardian,
    School,
    Student,
    StudentGuardian,
    StudentMove,
)
from .row_security import EVERY_SCHOOL, acting_for

PERSONAL_FIELDS = [
    "first_name",
    "middle_name",
    "last_name",
    "preferred_name",
    "date_of_birth",
    "gender",
    "email",
    "phone",
    "address",
    "medical_notes",
]


def _leave(student: Student, effective_on: datetime.date, status: str, reason: str) -> None:
    if student.status != Student.Status.ACTIVE:
        raise ValidationError(
            f"{student} is not an active student ({student.get_status_display()})."
        )
    if effective_on < student.admitted_on:
        raise ValidationError("A student cannot leave before they were admitted.")
    Enrollment.objects.filter(student=student, ended_on__isnull=True).update(
        ended_on=effective_on, end_reason=reason
    )
    student.status = status
    student.save(update_fields=["status", "updated_at"])


@transaction.atomic
def student_withdraw(
    *, student: Student, effective_on: datetime.date, reason_code: str, note: str = "", actor: Actor
) -> StudentMove:
    """Withdraw a student: their enrollments end on that day; the record stays, read-only."""
    student = Student.objects.select_for_update().get(pk=student.pk)
    _leave(student, effective_on, Student.Status.WITHDRAWN, "Withdrawn")
    move = StudentMove(
        school_id=student.school_id,
        student=student,
        kind=StudentMove.Kind.WITHDRAWAL,
        reason_code=reason_code,
        effective_on=effective_on,
        note=note,
        recorded_by=as_user(actor),
    )
    move.full_clean()
    move.save()
    audit_record(
        actor=actor,
        action="withdraw",
        target=student,
        changes={"effective_on": effective_on.isoformat(), "reason": reason_code},
    )
    school_cache_bump(student.school_id)
    return move


@transaction.atomic
def student_transfer(
    *,
    student: Student,
    to_school: School,
    effective_on: datetime.date,
    reason_code: str = StudentMove.ReasonCode.WITHIN_DISTRICT,
    note: str = "",
    new_student_number: str | None = None,
    actor: Actor,
) -> StudentMove:
    """Move a student to another school of the deployment.

    The sending school's record is closed (status transferred, enrollments ended) and stays
    with it, read-only. The receiving school gets a new record, with the guardians copied
    and linked to the old one, so from the transfer date on it sees the whole history.
    """
    if to_school.pk == student.school_id:
        raise ValidationError("A transfer goes to another school.")
    # The one write that spans two schools: row-level security lets it write in both.
    with acting_for([student.school_id, to_school.pk]):
        return _transfer(
            student, to_school, effective_on, reason_code, note, new_student_number, actor
        )


def _transfer(
    student: Student,
    to_school: School,
    effective_on: datetime.date,
    reason_code: str,
    note: str,
    new_student_number: str | None,
    actor: Actor,
) -> StudentMove:
    student = Student.objects.select_for_update().get(pk=student.pk)
    _leave(student, effective_on, Student.Status.TRANSFERRED, f"Transferred to {to_school}")
    number = new_student_number or student.student_number
    if Student.objects.for_school(to_school).filter(student_number=number).exists():
        raise ValidationError(
            f"{to_school} already has a student number {number}; give the new record another."
        )
    level = None
    if student.grade_level_id:
        level = (
            GradeLevel.objects.for_school(to_school)
            .filter(
                order=student.grade_level.order  # type: ignore[union-attr]
            )
            .first()
        )
    arrived = Student(
        school=to_school,
        student_number=number,
        grade_level=level,
        admitted_on=effective_on,
        notes=f"Transferred from {student.school}.",
        **{f: getattr(student, f) for f in PERSONAL_FIELDS},
    )
    arrived.full_clean()
    arrived.save()
    for link in StudentGuardian.objects.filter(student=student).select_related("guardian"):
        old = link.guardian
        copy = Guardian.objects.create(
            school=to_school,
            first_name=old.first_name,
            last_name=old.last_name,
            email=old.email,
            phone=old.phone,
            alternate_phone=old.alternate_phone,
            address=old.address,
            preferred_language=old.preferred_language,
            receives_absence_alerts=old.receives_absence_alerts,
        )
        StudentGuardian.objects.create(
            school=to_school,
            student=arrived,
            guardian=copy,
            relationship=link.relationship,
            is_primary=link.is_primary,
            can_pick_up=link.can_pick_up,
            lives_with_student=link.lives_with_student,
        )
    move = StudentMove(
        school_id=student.school_id,
        student=student,
        kind=StudentMove.Kind.TRANSFER,
        reason_code=reason_code,
        effective_on=effective_on,
        to_school=to_school,
        new_record=arrived,
        note=note,
        recorded_by=as_user(actor),
    )
    move.full_clean()
    move.save()
    for target in (student, arrived):  # each school's trail shows the move
        audit_record(
            actor=actor,
            action="transfer",
            target=target,
            changes={
                "from": student.school.name,
                "to": to_school.name,
                "effective_on": effective_on.isoformat(),
            },
        )
    school_cache_bump(student.school_id)
    school_cache_bump(to_school.pk)
    return move


def earlier_records(*, student: Student, on: datetime.date) -> list[Student]:
    """The student's records at schools they transferred from, newest first, as far as the
    receiving school may see them on `on`: only once the transfer has taken effect."""
    found: list[Student] = []
    current = student
    # The earlier records are other schools': the chain is read by the new record's id
    # wherever it leads (row-level security would hide it); callers read what the records
    # hold inside `acting_for` their schools.
    with acting_for(EVERY_SCHOOL):
        while True:
            move = (
                StudentMove.objects.filter(new_record=current, effective_on__lte=on)
                .select_related("student__school", "student__grade_level")
                .first()
            )
            if move is None or move.student in found:
                return found
            found.append(move.student)
            current = move.student
