"""The audit trail: one immutable row for every event a school must be able to answer for."""

from __future__ import annotations

from typing import Any

from auditlog.models import AbstractLogEntry, LogEntryManager
from django.conf import settings
from django.db import models


class AuditEventQuerySet(models.QuerySet):
    def for_school(self, school: object) -> AuditEventQuerySet:
        return self.filter(school_id=getattr(school, "pk", school))

    def about_student(self, student_id: int) -> AuditEventQuerySet:
        return self.filter(student_id=student_id)


class AuditEvent(models.Model):
    """Who did what to which record, when and from where.

    `school_id` and `student_id` are plain integers rather than foreign keys on purpose: the
    trail must outlive the rows it describes, and it answers "who has seen this child's
    record?" with one indexed lookup.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_repr = models.CharField(max_length=200, blank=True)
    school_id = models.BigIntegerField(null=True, blank=True)
    student_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=50)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=300, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    # Row-level security (students.row_security): a school's entries to those acting for
    # it; entries of no school (sign-ins, backups) are the district's own.
    row_security_columns = ("school_id",)
    row_security_also = "school_id IS NULL"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["school_id", "created_at"], name="audit_school_time_idx"),
            models.Index(fields=["student_id", "created_at"], name="audit_student_time_idx"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_repr} {self.action} {self.target_repr}"
        )


class ModelChangeManager(LogEntryManager):
    """django-auditlog's manager, filling in what our trail needs on every entry: the school
    and student the row belongs to, and who changed it from where (the request's context)."""

    def log_create(self, instance: Any, force_log: bool = False, **kwargs: Any) -> Any:
        return super().log_create(instance, force_log=force_log, **_context(instance, kwargs))

    def log_m2m_changes(
        self, changed_queryset: Any, instance: Any, operation: Any, field_name: Any, **kwargs: Any
    ) -> Any:
        return super().log_m2m_changes(
            changed_queryset, instance, operation, field_name, **_context(instance, kwargs)
        )


def _context(instance: models.Model, kwargs: dict[str, Any]) -> dict[str, Any]:
    from .context import current_origin

    school_id, student_id = owner_ids(instance)
    kwargs.setdefault("school_id", school_id)
    kwargs.setdefault("student_id", student_id)
    origin = current_origin()
    if origin is not None:
        actor = origin.acting_user()
        kwargs.setdefault("actor", actor)
        if actor is not None:
            kwargs.setdefault("actor_email", actor.email or None)
        kwargs.setdefault("remote_addr", origin.ip_address)
    return kwargs


def owner_ids(instance: models.Model) -> tuple[int | None, int | None]:
    """The school and the student a row belongs to, for per-school and per-child lookups."""
    label = instance._meta.label
    school_id = instance.pk if label == "students.School" else getattr(instance, "school_id", None)
    if label == "students.Student":
        student_id = instance.pk
    elif label == "files.DocumentVersion":
        # The version's document is loaded already wherever a version is written.
        student_id = instance.document.student_id  # type: ignore[attr-defined]
    else:
        student_id = getattr(instance, "student_id", None)
    return school_id, student_id


class ModelChange(AbstractLogEntry):
    """One create, update or delete of a school record, with the changed fields' old and new
    values (django-auditlog's entry). `school_id` and `student_id` are plain indexed integers,
    like AuditEvent's: the history outlives the rows, and an auditor's page is one lookup."""

    school_id = models.BigIntegerField(null=True, blank=True)
    student_id = models.BigIntegerField(null=True, blank=True)

    objects = ModelChangeManager()

    row_security_columns = ("school_id",)
    row_security_also = "school_id IS NULL"

    class Meta(AbstractLogEntry.Meta):
        verbose_name = "model change"
        verbose_name_plural = "model history"
        indexes = [
            models.Index(fields=["school_id", "timestamp"], name="audit_change_school_idx"),
            models.Index(fields=["student_id", "timestamp"], name="audit_change_student_idx"),
        ]
