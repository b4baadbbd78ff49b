"""Failure alerts: e-mail to ADMINS and, when configured, a JSON POST to a webhook."""

from __future__ import annotations

import json
import logging
import urllib.request

from django.conf import settings
from django.core.mail import mail_admins

from ..models import BackupRun

logger = logging.getLogger(__name__)


def backup_failure_alert(*, run: BackupRun, summary: str, detail: str) -> None:
    """Tell the people who can act. Never raises: an alert that fails is logged, and the
    failed run itself stays visible in the admin and to the health check."""
    logger.error("%s: %s", summary, detail)
    try:
        mail_admins(summary, f"{summary}\n\n{detail}\n\nRun: {run.pk} started {run.started_at}")
    except Exception:
        logger.exception("could not e-mail the backup alert")
    url = settings.BACKUP_ALERT_WEBHOOK_URL
    if not url:
        return
    body = json.dumps(
        {
            "event": "backup_failed",
            "summary": summary,
            "detail": detail[:4000],
            "run_id": run.pk,
            "kind": run.kind,
            "started_at": run.started_at.isoformat() if run.started_at else None,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in settings
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            answer.read()
    except Exception:
        logger.exception("could not post the backup alert to the webhook")
