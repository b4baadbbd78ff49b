"""Writes to the school record. Each service is one transaction that also writes its audit
entry and, where cached figures change, bumps the school's cache version on commit."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.history import bulk_history_record, history_snapshot
from audit.services import Actor, as_user, audit_record, model_changes

from .cache import ATTENDANCE, GRADES, school_cache_bump
from .models import (
    Assessment,
    AttendanceRecord,
    Enrollment,
    Grade,
    Guardian,
    School,
    Section,
    StaffMember,
    Student,
    StudentGuardian,
)
from .tenancy import ROLE_GROUPS

STUDENT_EDITABLE_FIELDS = [
    "student_number",
    "first_name",
    "middle_name",
    "last_name",
    "preferred_name",
    "date_of_birth",
    "gender",
    "grade_level",
    "status",
    "admitted_on",
    "email",
    "phone",
    "address",
    "medical_notes",
    "notes",
]


@transaction.atomic
def staff_member_create(
    *, school: School, user: User, role: str, title: str = "", actor: Actor
) -> StaffMember:
    """Give a user a role at a school; the role's group carries its permissions."""
    member = StaffMember(school=school, user=user, role=role, title=title)
    member.full_clean()
    member.save()
    user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
    if role == StaffMember.Role.SCHOOL_ADMIN and not user.is_staff:
        user.is_staff = True  # school admins use the admin console
        user.save(update_fields=["is_staff"])
    audit_record(actor=actor, action="role_grant", target=member, changes={"role": [None, role]})
    return member


@transaction.atomic
def student_create(*, school: School, actor: Actor, **fields: Any) -> Student:
    student = Student(school=school, **fields)
    student.full_clean()
    student.save()
    audit_record(actor=actor, action="create", target=student)
    school_cache_bump(school.pk)
    return student


@transaction.atomic
def student_update(*, student: Student, actor: Actor, **fields: Any) -> Student:
    if student.status == Student.Status.TRANSFERRED:
        # The record now belongs to the period this school owned: it stays as it was.
        raise ValidationError(
            "This student transferred to another school; the record is read-only."
        )
    before = {name: getattr(student, name) for name in STUDENT_EDITABLE_FIELDS}
    for name, value in fields.items():
        if name not in STUDENT_EDITABLE_FIELDS:
            raise ValueError(f"{name} is not an editable student field")
        setattr(student, name, value)
    student.full_clean()
    student.save()
    changes = model_changes(before, student, STUDENT_EDITABLE_FIELDS)
    if changes:
        audit_record(actor=actor, action="update", target=student, changes=changes)
        school_cache_bump(student.school_id)
    return student


@transaction.atomic
def guardian_link(
    *,
    student: Student,
    guardian: Guardian,
    relationship: str,
    is_primary: bool = False,
    can_pick_up: bool = True,
    actor: Actor,
) -> StudentGuardian:
    link = StudentGuardian(
        school_id=student.school_id,
        student=student,
        guardian=guardian,
        relationship=relationship,
        is_primary=is_primary,
        can_pick_up=can_pick_up,
    )
    link.full_clean()
    link.save()
    audit_record(actor=actor, action="guardian_link", target=link)
    school_cache_bump(student.school_id)  # rosters print the primary contact
    return link


@transaction.atomic
def student_enrol(
    *, student: Student, section: Section, actor: Actor, on: datetime.date | None = None
) -> Enrollment:
    """Enrol a student in a section, ending any open enrollment of the same academic year."""
    on = on or timezone.localdate()
    Enrollment.objects.filter(
        student=student, academic_year=section.academic_year, ended_on__isnull=True
    ).update(ended_on=on, end_reason="Moved to another section")
    enrollment = Enrollment(
        school_id=student.school_id,
        student=student,
        section=section,
        academic_year=section.academic_year,
        started_on=on,
    )
    enrollment.full_clean()
    enrollment.save()
    audit_record(actor=actor, action="enrol", target=enrollment)
    school_cache_bump(student.school_id)
    return enrollment


@dataclass(frozen=True)
class AttendanceMark:
    status: str
    note: str = ""


@transaction.atomic
def attendance_record_bulk(
    *,
    section: Section,
    date: datetime.date,
    marks: Mapping[int, AttendanceMark],
    actor: Actor,
    period: int = 0,
) -> list[AttendanceRecord]:
    """Record (or correct) a section's attendance for one date and period in one statement.

    `marks` maps student id to mark; every student must be on the section's roster that day.
    Queries do not grow with the class size: one roster read, one upsert, one audit insert.
    """
    if date > timezone.localdate():
        raise ValidationError("Attendance cannot be taken for a future date.")
    roster = set(
        Enrollment.objects.filter(section=section, started_on__lte=date)
        .exclude(ended_on__lt=date)
        .values_list("student_id", flat=True)
    )
    strangers = set(marks) - roster
    if strangers:
        raise ValidationError(f"{len(strangers)} student(s) are not enrolled in {section.name}.")
    valid = set(AttendanceRecord.Status.values)
    records = []
    for student_id, mark in marks.items():
        if mark.status not in valid:
            raise ValidationError(f"Unknown attendance status {mark.status!r}.")
        records.append(
            AttendanceRecord(
                school_id=section.school_id,
                section=section,
                student_id=student_id,
                date=date,
                period=period,
                status=mark.status,
                note=mark.note[:200],
                recorded_by=as_user(actor),
                recorded_at=timezone.now(),
            )
        )
    # bulk_create sends no signals: keep the per-row history (old and new values) by hand.
    history_fields = ["student", "section", "date", "period", "status", "note"]
    before = history_snapshot(
        AttendanceRecord.objects.filter(student_id__in=list(marks), date=date, period=period),
        history_fields,
    )
    AttendanceRecord.objects.bulk_create(
        records,
        update_conflicts=True,
        unique_fields=["student", "date", "period"],
        update_fields=["status", "note", "recorded_by", "recorded_at", "section"],
    )
    bulk_history_record(
        rows=records, fields=history_fields, before=before, actor=actor, operation="attendance"
    )
    counts: dict[str, int] = {}
    for mark in marks.values():
        counts[mark.status] = counts.get(mark.status, 0) + 1
    if any(mark.status == AttendanceRecord.Status.ABSENT for mark in marks.values()):
        from .absence_alerts import absence_alerts_queue

        absence_alerts_queue(section=section, date=date)
    audit_record(
        actor=actor,
        action="attendance_take",
        target=section,
        changes={"date": date.isoformat(), "period": period, "counts": counts},
    )
    school_cache_bump(section.school_id, ATTENDANCE, students=marks)
    return records


@dataclass(frozen=True)
class GradeEntry:
    score: Decimal
    comment: str = ""


@transaction.atomic
def grade_record_bulk(
    *, assessment: Assessment, entries: Mapping[int, GradeEntry], actor: Actor
) -> list[Grade]:
    """Record the scores of an assessment; the database refuses any outside 0..max."""
    roster = set(
        Enrollment.objects.filter(
            section_id=assessment.section_id, ended_on__isnull=True
        ).values_list("student_id", flat=True)
    ) | set(Grade.objects.filter(assessment=assessment).values_list("student_id", flat=True))
    strangers = set(entries) - roster
    if strangers:
        raise ValidationError(f"{len(strangers)} student(s) are not in this section.")
    grades = []
    for student_id, entry in entries.items():
        if not (Decimal(0) <= entry.score <= assessment.max_score):
            raise ValidationError(f"A score of {entry.score} is outside 0–{assessment.max_score}.")
        grades.append(
            Grade(
                school_id=assessment.school_id,
                assessment=assessment,
                student_id=student_id,
                score=entry.score,
                max_score=assessment.max_score,
                comment=entry.comment[:300],
                recorded_by=as_user(actor),
                updated_at=timezone.now(),
            )
        )
    history_fields = ["assessment", "student", "score", "comment"]
    before = history_snapshot(
        Grade.objects.filter(assessment=assessment, student_id__in=list(entries)), history_fields
    )
    Grade.objects.bulk_create(
        grades,
        update_conflicts=True,
        unique_fields=["assessment", "student"],
        update_fields=["score", "max_score", "comment", "recorded_by", "updated_at"],
    )
    bulk_history_record(
        rows=grades, fields=history_fields, before=before, actor=actor, operation="grades"
    )
    audit_record(
        actor=actor, action="grades_enter", target=assessment, changes={"count": len(grades)}
    )
    school_cache_bump(assessment.school_id, GRADES, students=entries)
    return grades


@transaction.atomic
def grade_delete_bulk(*, assessment: Assessment, student_ids: Iterable[int], actor: Actor) -> int:
    student_ids = list(student_ids)
    deleted, _ = Grade.objects.filter(assessment=assessment, student_id__in=student_ids).delete()
    if deleted:
        audit_record(
            actor=actor, action="grades_clear", target=assessment, changes={"count": deleted}
        )
        school_cache_bump(assessment.school_id, GRADES, students=student_ids)
    return deleted


@transaction.atomic
def assessment_save(*, assessment: Assessment, actor: Actor) -> Assessment:
    """Create or change an assessment, keeping its grades' copy of the maximum in step."""
    assessment.full_clean()
    creating = assessment.pk is None
    assessment.save()
    if not creating:
        too_high = Grade.objects.filter(assessment=assessment, score__gt=assessment.max_score)
        if too_high.exists():
            raise ValidationError(
                f"{too_high.count()} recorded score(s) exceed the new maximum "
                f"{assessment.max_score}; correct them first."
            )
        Grade.objects.filter(assessment=assessment).update(max_score=assessment.max_score)
    audit_record(actor=actor, action="create" if creating else "update", target=assessment)
    school_cache_bump(assessment.school_id, GRADES)
    return assessment
