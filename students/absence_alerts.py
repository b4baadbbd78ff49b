"""E-mails to guardians when a student is marked absent without an excuse.

Queued by `attendance_record_bulk` once the attendance is committed; at most one message
per guardian per student per day (a unique constraint on the delivery log, not a cache
flag), and each guardian can opt out.
"""

from __future__ import annotations

import datetime
import logging
import string
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from .models import (
    AbsenceAlert,
    AbsenceAlertSettings,
    AttendanceRecord,
    School,
    Section,
    StudentGuardian,
)

log = logging.getLogger(__name__)
PLACEHOLDERS = {
    "guardian_name",
    "student_name",
    "student_first_name",
    "date",
    "section",
    "school_name",
    "school_phone",
}


def template_check(text: str) -> None:
    """Refuse a subject or body that names an unknown placeholder or has stray braces."""
    try:
        names = {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}
    except ValueError as exc:
        raise ValidationError(
            f"Braces do not match: {exc}. Write {{{{ and }}}} for a brace."
        ) from exc
    unknown = names - PLACEHOLDERS
    if unknown:
        raise ValidationError(f"Unknown placeholder(s): {', '.join(sorted(unknown))}.")


def alert_settings(school: School) -> AbsenceAlertSettings:
    found, _ = AbsenceAlertSettings.objects.get_or_create(school=school)
    return found


def absence_alerts_queue(*, section: Section, date: datetime.date) -> None:
    """Send the day's alerts for the section after the current transaction commits."""
    from .tasks import absence_alerts_send_task

    # robust: the attendance is committed by now; a broker that is down (Redis outage) is
    # logged, never turned into a 500 that makes the teacher think the register was lost.
    transaction.on_commit(
        lambda: absence_alerts_send_task.delay(section_id=section.pk, date=date.isoformat()),
        robust=True,
    )


def absence_alerts_send(*, section_id: int, date: datetime.date) -> list[AbsenceAlert]:
    """Write a log row per (student, primary guardian, day) not yet alerted, then send each.

    Safe to run twice or concurrently: the insert ignores rows that exist, and each pending
    row is sent by whoever locks it first (SELECT ... FOR UPDATE SKIP LOCKED).
    """
    section = Section.objects.select_related("school").get(pk=section_id)
    config = alert_settings(section.school)
    if not config.enabled:
        return []
    absent = AttendanceRecord.objects.filter(
        section=section, date=date, status=AttendanceRecord.Status.ABSENT
    ).values_list("student_id", flat=True)
    links = (
        StudentGuardian.objects.filter(
            student_id__in=list(absent),
            is_primary=True,
            guardian__receives_absence_alerts=True,
        )
        .exclude(guardian__email="")
        .select_related("guardian")
    )
    AbsenceAlert.objects.bulk_create(
        [
            AbsenceAlert(
                school_id=section.school_id,
                student_id=link.student_id,
                guardian=link.guardian,
                date=date,
                email=link.guardian.email,
            )
            for link in links
        ],
        ignore_conflicts=True,
    )
    sent = []
    pending = AbsenceAlert.objects.filter(
        school_id=section.school_id,
        date=date,
        status=AbsenceAlert.Status.PENDING,
        student_id__in=list(absent),
    ).values_list("pk", flat=True)
    for pk in list(pending):
        alert = _send_one(pk, section, config)
        if alert is not None:
            sent.append(alert)
    return sent


@transaction.atomic
def _send_one(pk: int, section: Section, config: AbsenceAlertSettings) -> AbsenceAlert | None:
    alert = (
        AbsenceAlert.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("student", "guardian")
        .filter(pk=pk, status=AbsenceAlert.Status.PENDING)
        .first()
    )
    if alert is None:
        return None  # another worker has it, or it went out already
    still_absent = AttendanceRecord.objects.filter(
        student=alert.student, date=alert.date, status=AttendanceRecord.Status.ABSENT
    ).exists()
    if not still_absent:  # corrected (excused, or marked present) before we got to it
        alert.delete()
        return None
    context: dict[str, Any] = {
        "guardian_name": alert.guardian.full_name,
        "student_name": alert.student.full_name,
        "student_first_name": alert.student.preferred_name or alert.student.first_name,
        "date": alert.date.strftime("%A %d %B %Y"),
        "section": section.name,
        "school_name": section.school.name,
        "school_phone": section.school.phone,
    }
    try:
        message = EmailMessage(
            subject=config.subject.format(**context).replace("\n", " ")[:200],
            body=config.body.format(**context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[alert.email],
            reply_to=[config.reply_to] if config.reply_to else None,
        )
        message.send()
    except Exception as exc:  # an SMTP refusal is logged on the row, never lost  # noqa: BLE001
        log.warning("absence alert %s to %s failed: %s", alert.pk, alert.email, exc)
        alert.status, alert.error = AbsenceAlert.Status.FAILED, str(exc)[:300]
    else:
        alert.status, alert.sent_at = AbsenceAlert.Status.SENT, timezone.now()
    alert.save(update_fields=["status", "error", "sent_at"])
    return alert
