"""Events that no service call site sees: log-ins, log-outs, failed log-ins (Django's auth
signals), and role or password changes made wherever a user row is saved (admin, services,
`manage.py changepassword`), read off the model history as it is written."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save

from .models import ModelChange
from .services import audit_record

# A change to these is a change of what someone may see or do.
STAFF_ROLE_FIELDS = {"role", "is_active", "school"}
USER_ROLE_FIELDS = {"groups", "is_superuser", "is_staff", "is_active"}


def _school_ids(user_id: int | None) -> list[int | None]:
    """The schools whose auditors must see an event about this user; none (district level)
    for a user without a school."""
    if user_id is None:
        return [None]
    from students.models import StaffMember
    from students.row_security import acting_for

    # Before (or without) a school: row-level security admits a user's own memberships.
    with acting_for(user_id=user_id):
        ids: list[int | None] = list(
            StaffMember.objects.filter(user_id=user_id)
            .values_list("school_id", flat=True)
            .distinct()
        )
    return ids or [None]


def _record_per_school(*, user_id: int | None, **kwargs: Any) -> None:
    from students.row_security import acting_for

    for school_id in _school_ids(user_id):
        # Each school's trail gets its entry, whatever school the request acts for.
        with acting_for(None if school_id is None else [school_id]):
            audit_record(school_id=school_id, **kwargs)


def on_logged_in(sender: Any, request: Any, user: User, **kwargs: Any) -> None:
    _record_per_school(user_id=user.pk, actor=user, action="login", target=user)


def on_logged_out(sender: Any, request: Any, user: User | None, **kwargs: Any) -> None:
    if user is None:  # the session had already ended
        return
    _record_per_school(user_id=user.pk, actor=user, action="logout", target=user)


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # Only the username: Django already masks the password in `credentials`, and it is never
    # read here.
    username = str(credentials.get("username", ""))[:150]
    known = User.objects.filter(username=username).values_list("pk", flat=True).first()
    _record_per_school(
        user_id=known,
        actor=None,
        actor_repr=username or "(no username)",
        action="login_failed",
        changes={"username": username},
    )


def on_model_change(sender: Any, instance: ModelChange, created: bool, **kwargs: Any) -> None:
    """Turn history of staff roles and accounts into the events a school answers for."""
    if not created or instance.content_type.app_label not in {"students", "auth"}:
        return
    model = instance.content_type.model
    changes = instance.changes if isinstance(instance.changes, dict) else {}
    action = instance.action
    if model == "staffmember":
        if action == ModelChange.Action.UPDATE and not STAFF_ROLE_FIELDS & set(changes):
            return
        if action == ModelChange.Action.CREATE:
            return  # staff_member_create and the admin record the grant itself
        audit_record(
            actor=instance.actor,
            action="role_change" if action == ModelChange.Action.UPDATE else "role_revoke",
            school_id=instance.school_id,
            changes={"staff_member": instance.object_repr, **changes},
        )
    elif model == "user" and action == ModelChange.Action.UPDATE:
        user_id = instance.object_id
        if USER_ROLE_FIELDS & set(changes):
            _record_per_school(
                user_id=user_id,
                actor=instance.actor,
                action="role_change",
                changes={
                    "user": instance.object_repr,
                    **{k: v for k, v in changes.items() if k in USER_ROLE_FIELDS},
                },
            )
        if "password" in changes and instance.actor_id != user_id:
            # Someone else (an administrator, a command) set this user's password. A user's own
            # change is recorded by accounts' password page as "password_change".
            _record_per_school(
                user_id=user_id,
                actor=instance.actor,
                action="password_set",
                changes={"user": instance.object_repr},
            )


def connect() -> None:
    user_logged_in.connect(on_logged_in, dispatch_uid="audit.login")
    user_logged_out.connect(on_logged_out, dispatch_uid="audit.logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="audit.login_failed")
    post_save.connect(on_model_change, sender=ModelChange, dispatch_uid="audit.model_change")
