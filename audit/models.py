"""The audit trail: one immutable row for every event a school must be able to answer for."""

from __future__ import annotations

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
