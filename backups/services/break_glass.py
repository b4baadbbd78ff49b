"""A restore run by an operator who has no second factor: allowed only when named as an
emergency, and never quietly."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from audit.services import audit_record

from ..models import BackupRun
from .alerts import backup_alert


class BreakGlassRefused(Exception):
    """The break-glass flag was given without a reason."""


def restore_break_glass_record(*, operator: User, reason: str, runs: list[BackupRun]) -> None:
    """Record that `operator` restores `runs` without a two-factor code, and alert the
    administrators.

    The audit entry is written before the restore touches anything, in the database as it is
    now (a restore that swaps databases keeps it in the `_before_restore` copy); the alert
    leaves the machine at once, so the record survives whatever the restore does next."""
    reason = " ".join(reason.split())
    if len(reason) < 10:
        raise BreakGlassRefused(
            "--break-glass needs a reason others can follow up (at least 10 characters), "
            'e.g. --break-glass "ticket 4521: server lost, Ana\'s phone not enrolled yet".'
        )
    ids = [run.pk for run in runs]
    with transaction.atomic():
        audit_record(
            actor=operator,
            action="restore_break_glass",
            target=runs[0] if runs else None,
            changes={"reason": reason, "backups": ids},
        )
    backup_alert(
        name="restore_break_glass",
        summary=f"{operator.username} is restoring backup(s) {ids} without two-factor",
        detail=f"Reason given: {reason}\n\nThe operator has no confirmed authenticator; "
        "check that this restore was expected, then have them enrol one.",
    )
