"""Writing to the audit trail. Call inside the transaction of the change being audited."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models, transaction

from students.row_security import acting_for

from .context import current_origin
from .models import AuditEvent

# Whoever acts: a logged-in user, an anonymous visitor, or None for the system itself.
Actor = User | AnonymousUser | None


def as_user(actor: Actor) -> User | None:
    """The acting account, or None when nobody is logged in (system jobs, anonymous)."""
    return actor if isinstance(actor, User) else None


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    school_id: int | None = None,
    student_id: int | None = None,
    changes: dict[str, Any] | None = None,
    actor_repr: str | None = None,
) -> AuditEvent:
    """Append one event. School and student are taken from the target when it has them.
    `actor_repr` names an actor who has no account here (a failed log-in's username)."""
    event = _event(
        actor=actor,
        action=action,
        target=target,
        school_id=school_id,
        student_id=student_id,
        changes=changes,
        actor_repr=actor_repr,
    )
    # The trail records what its callers hand it: an entry goes to the school it concerns,
    # whatever school the caller acts for (row-level security would refuse it otherwise).
    with acting_for(None if event.school_id is None else [event.school_id]):
        event.save(force_insert=True)
    return event


def _event(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None,
    school_id: int | None = None,
    student_id: int | None = None,
    changes: dict[str, Any] | None = None,
    actor_repr: str | None = None,
) -> AuditEvent:
    """The event `audit_record` appends, not saved yet."""
    if target is not None:
        if school_id is None:
            school_id = (
                target.pk
                if target._meta.label == "students.School"
                else getattr(target, "school_id", None)
            )
        if student_id is None:
            student_id = getattr(target, "student_id", None)
            if student_id is None and target._meta.label == "students.Student":
                student_id = target.pk
        if school_id is None and target._meta.label == "auth.User":
            # An account's event (password change, 2FA) belongs to the school it works at.
            from students.models import StaffMember

            with acting_for(user_id=target.pk):  # a user's own memberships, in any school
                school_id = (
                    StaffMember.objects.filter(user_id=target.pk)
                    .order_by("pk")
                    .values_list("school_id", flat=True)
                    .first()
                )
    origin = current_origin()
    real_actor = as_user(actor)
    return AuditEvent(
        actor=real_actor,
        actor_repr=(
            actor_repr
            if actor_repr is not None
            else real_actor.get_username()
            if real_actor is not None
            else "system"
        )[:200],
        school_id=school_id,
        student_id=student_id,
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:300] if target is not None else "",
        ip_address=origin.ip_address if origin else None,
        user_agent=origin.user_agent if origin else "",
        changes=changes or {},
    )


def model_changes(before: dict[str, Any], after: models.Model, fields: list[str]) -> dict[str, Any]:
    """The fields whose value differs, as {"field": [old, new]}, in JSON-safe strings."""
    return {
        name: [str(before.get(name)), str(getattr(after, name))]
        for name in fields
        if before.get(name) != getattr(after, name)
    }


@transaction.atomic
def section_disclosure_record(
    *,
    actor: Actor,
    action: str,
    section: models.Model,
    changes: dict[str, Any] | None = None,
    student_ids: Iterable[int] | None = None,
) -> int:
    """Record a read of a whole class (contact sheet, roster export): the class's event, plus
    one per child on its current roster, so each child's "who has seen this record?" shows it.
    `student_ids`: the children the export printed, when the caller has them (a cached
    roster carries its own); otherwise the class's open enrolments are read. One INSERT for
    all the entries, in one transaction: all of them or none."""
    from students.models import Enrollment

    event = _event(actor=actor, action=action, target=section, changes=changes)
    if student_ids is None:
        student_ids = (
            Enrollment.objects.filter(section_id=section.pk, ended_on__isnull=True)
            .values_list("student_id", flat=True)
            .distinct()
        )
    children = [
        AuditEvent(
            actor=event.actor,
            actor_repr=event.actor_repr,
            school_id=event.school_id,
            student_id=student_id,
            action=action,
            target_type=event.target_type,
            target_id=event.target_id,
            target_repr=event.target_repr,
            ip_address=event.ip_address,
            user_agent=event.user_agent,
            changes={**event.changes, "of_class": True},
        )
        for student_id in dict.fromkeys(student_ids)
    ]
    AuditEvent.objects.bulk_create([event, *children], batch_size=1000)
    return len(children)
