"""Model history: which rows django-auditlog follows, and the same history for bulk writes.

Auditlog hears `post_save` / `post_delete`, so every `save()` and `delete()` of a followed
model leaves an `audit.ModelChange` with the changed fields' old and new values, whichever
code path made it (service, admin, shell, task). `bulk_create`, `bulk_update` and
`QuerySet.update` send no signals: the services that use them call `bulk_history_record`
with a `history_snapshot` taken before the write, which costs two queries per batch however
many rows it touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from auditlog.cid import get_cid
from auditlog.registry import auditlog
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import models

from .context import current_origin
from .models import ModelChange, owner_ids
from .services import Actor, as_user

MASK = "(hidden)"

# Values nobody reading the trail needs: health notes and password hashes. The entry still
# says the field changed, and who changed it.
MASKED_FIELDS: dict[str, list[str]] = {
    "students.Student": ["medical_notes"],
    "auth.User": ["password"],
}
# Bookkeeping that changes on its own (every login stamps last_login; the login itself is an
# AuditEvent) or is derived from other columns.
EXCLUDED_FIELDS: dict[str, list[str]] = {
    "auth.User": ["last_login"],
}
# Whole apps whose every model is school data, and single models elsewhere.
FOLLOWED_APPS = ["students", "reportcards"]
FOLLOWED_MODELS = [
    "files.Document",
    "files.DocumentVersion",
    "backups.RetentionPolicy",
    "auth.User",
]
# Many-to-many fields whose changes are role changes (auth groups carry the permissions).
M2M_FIELDS: dict[str, list[str]] = {"auth.User": ["groups"]}


def mask_value(value: str) -> str:
    """AUDITLOG_MASK_CALLABLE: hide the whole value (auditlog's default keeps half of it)."""
    return MASK


def followed_models() -> list[type[models.Model]]:
    found: list[type[models.Model]] = []
    for label in FOLLOWED_APPS:
        found.extend(apps.get_app_config(label).get_models())
    found.extend(apps.get_model(label) for label in FOLLOWED_MODELS)
    return found


def register_models() -> None:
    """Follow every school-data model (called once, from AuditConfig.ready)."""
    for model in followed_models():
        label = model._meta.label
        if auditlog.contains(model):
            continue
        auditlog.register(
            model,
            exclude_fields=EXCLUDED_FIELDS.get(label, []),
            mask_fields=MASKED_FIELDS.get(label, []),
            m2m_fields=set(M2M_FIELDS.get(label, [])),
        )


def _text(value: Any) -> str:
    # The same text auditlog's diff stores: foreign keys as their id, None as "None"; a
    # decimal without its trailing zeros, so 8.50 read back equals 8.5 as entered.
    if value is None:
        return "None"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _value(instance: models.Model, field: models.Field) -> str:
    return _text(getattr(instance, field.attname))


def history_snapshot(queryset: models.QuerySet, fields: Sequence[str]) -> dict[Any, dict[str, str]]:
    """The current values of `fields` for the rows a bulk write is about to change, by pk.
    One query; pass the result to `bulk_history_record` after the write."""
    model = queryset.model
    concrete = [model._meta.get_field(name) for name in fields]
    attnames = [f.attname for f in concrete]  # type: ignore[union-attr]
    snapshot: dict[Any, dict[str, str]] = {}
    for row in queryset.values("pk", *attnames):
        snapshot[row["pk"]] = {
            f.name: _text(row[f.attname])  # type: ignore[union-attr]
            for f in concrete
        }
    return snapshot


def history_snapshot_of(
    objects: Iterable[models.Model], fields: Sequence[str]
) -> dict[Any, dict[str, str]]:
    """`history_snapshot` of rows already loaded (and not yet changed): no query."""
    snapshot: dict[Any, dict[str, str]] = {}
    for obj in objects:
        snapshot[obj.pk] = {
            name: _value(obj, obj._meta.get_field(name))  # type: ignore[arg-type]
            for name in fields
        }
    return snapshot


def bulk_history_record(
    *,
    rows: Iterable[models.Model],
    fields: Sequence[str],
    before: dict[Any, dict[str, str]],
    actor: Actor = None,
    operation: str,
) -> list[ModelChange]:
    """Write one ModelChange per created or changed row of a bulk write, in one insert.

    A row whose pk is in `before` is an update (only the fields whose text changed are kept,
    and an unchanged row leaves no entry); any other row is a create. `operation` names the
    service (kept in additional_data) so the batch can be told apart from single saves.
    """
    rows = list(rows)
    if not rows:
        return []
    model = type(rows[0])
    content_type = ContentType.objects.get_for_model(model)
    concrete = [model._meta.get_field(name) for name in fields]
    masked = set(MASKED_FIELDS.get(model._meta.label, []))
    origin = current_origin()
    user = as_user(actor) or (origin.acting_user() if origin else None)
    cid = get_cid()
    entries = []
    for row in rows:
        old = before.get(row.pk)
        changes: dict[str, list[str]] = {}
        for field in concrete:
            new_text = _value(row, field)  # type: ignore[arg-type]
            old_text = old.get(field.name, "None") if old is not None else "None"
            if old is None or old_text != new_text:
                if field.name in masked:
                    old_text, new_text = MASK, MASK
                changes[field.name] = [old_text, new_text]
        if old is not None and not changes:
            continue
        school_id, student_id = owner_ids(row)
        entries.append(
            ModelChange(
                content_type=content_type,
                object_pk=str(row.pk),
                object_id=row.pk if isinstance(row.pk, int) else None,
                # Not str(row): a __str__ that follows a foreign key would query per row.
                object_repr=f"{model._meta.verbose_name} #{row.pk}",
                action=ModelChange.Action.CREATE if old is None else ModelChange.Action.UPDATE,
                changes=changes,
                actor=user,
                actor_email=(user.email or None) if user is not None else None,
                remote_addr=origin.ip_address if origin else None,
                cid=cid,
                additional_data={"bulk": operation},
                school_id=school_id,
                student_id=student_id,
            )
        )
    return ModelChange.objects.bulk_create(entries, batch_size=1000)
