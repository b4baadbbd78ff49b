"""The backups' hook into monitoring's notifier: every backup alert (a failed run, a restore
run without two-factor) goes out by the one path every other alert takes, to ADMINS by
e-mail and to MONITORING_ALERT_WEBHOOK_URL when set."""

from __future__ import annotations

import logging

from django.utils import timezone

from ..models import BackupRun

logger = logging.getLogger(__name__)


def backup_alert(*, name: str, summary: str, detail: str) -> dict[str, bool]:
    """Send one alert named `name` (a kind in monitoring.notifications.ALERT_TITLES). Never
    raises: the notifier logs a channel that fails, and the cause stays recorded (the run's
    row, the audit trail) for the health page and the admin."""
    from monitoring.notifications import AlertMessage, notify

    logger.error("%s: %s", summary, detail)
    message = AlertMessage(
        name=name, state="firing", summary=f"{summary}\n\n{detail}", opened_at=timezone.now()
    )
    try:
        return notify(message)
    except Exception:
        logger.exception("could not send the %s alert", name)
        return {}


def backup_failure_alert(*, run: BackupRun, summary: str, detail: str) -> None:
    """Tell the people who can act that a run failed."""
    backup_alert(
        name="backup_failed",
        summary=summary,
        detail=f"{detail}\n\nRun: {run.pk} ({run.kind}) started {run.started_at}",
    )
