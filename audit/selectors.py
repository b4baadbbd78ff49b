"""Reading the trail: always through one school, so another school's entries never show."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from .models import AuditEvent, ModelChange
from .refusals import ACCESS_REFUSED

# Events that disclose a child's record to someone: what "who has seen this child's record?"
# lists (FERPA's record of disclosures). Changes are in the model history.
DISCLOSURE_ACTIONS = frozenset(
    {
        "view",
        "view_contacts",
        "export",
        "report_card_download",
        "transcript_download",
        "document_view",
        "document_download",
        "subject_access_export",
        "api_list",
        "api_retrieve",
    }
)


# Suggestions for the action filter (the trail accepts any action name).
COMMON_ACTIONS = sorted(
    DISCLOSURE_ACTIONS
    | {
        "login",
        "logout",
        "login_failed",
        "password_change",
        "password_set",
        "role_grant",
        "role_change",
        "role_revoke",
        "create",
        "update",
        "delete",
        "import",
        "attendance_take",
        "grades_enter",
        "backup_download",
        "backup_restore",
        ACCESS_REFUSED,
    }
)


@dataclass(frozen=True)
class TrailFilters:
    actor: str = ""
    action: str = ""
    student_id: int | None = None
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None


def _day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def audit_event_list(*, school_id: int, filters: TrailFilters) -> QuerySet[AuditEvent]:
    """The school's events, newest first, filtered; served by the (school_id, created_at)
    index. No join: actor_repr is the username at the time."""
    qs = AuditEvent.objects.for_school(school_id)
    if filters.actor:
        qs = qs.filter(actor_repr__iexact=filters.actor)
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.student_id is not None:
        qs = qs.filter(student_id=filters.student_id)
    if filters.date_from:
        qs = qs.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        qs = qs.filter(created_at__lt=_day_start(filters.date_to + datetime.timedelta(days=1)))
    return qs.order_by("-created_at", "-id")


def student_disclosure_list(*, school_id: int, student_id: int) -> QuerySet[AuditEvent]:
    """Who has seen this child's record: every read, download and export of it, newest first.
    Scoped to the school too: a transferred child's earlier school keeps its own trail."""
    return (
        AuditEvent.objects.for_school(school_id)
        .about_student(student_id)
        .filter(action__in=DISCLOSURE_ACTIONS)
        .order_by("-created_at", "-id")
    )


def student_change_list(*, school_id: int, student_id: int) -> QuerySet[ModelChange]:
    """Every create, update and delete of this child's rows (record, guardians' links,
    enrollments, attendance, grades, documents), newest first."""
    return (
        ModelChange.objects.filter(school_id=school_id, student_id=student_id)
        .select_related("content_type", "actor")
        .order_by("-timestamp", "-id")
    )
