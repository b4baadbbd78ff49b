"""Writing to the audit trail. Call inside the transaction of the change being audited."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models

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
) -> AuditEvent:
    """Append one event. School and student are taken from the target when it has them."""
    if target is not None:
        if school_id is None:
            school_id = getattr(target, "school_id", None)
        if student_id is None:
            student_id = getattr(target, "student_id", None)
            if student_id is None and target._meta.label == "students.Student":
                student_id = target.pk
    origin = current_origin()
    real_actor = as_user(actor)
    return AuditEvent.objects.create(
        actor=real_actor,
        actor_repr=real_actor.get_username() if real_actor is not None else "system",
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
