"""How an alert reaches people: e-mail to ADMINS, and a JSON POST to an optional webhook.

Each channel fails on its own: a dead SMTP server must not stop the webhook, and neither may
stop the alert evaluation (the state change is recorded either way, so the next evaluation
does not send the same message again).
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import urllib.request
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.core.mail import mail_admins

logger = logging.getLogger(__name__)

ALERT_TITLES: dict[str, str] = {
    "disk_full": "Disk almost full",
    "backup_failed": "Backup failed",
    "pitr_archiving": "WAL archiving or physical backups failing",
    "pitr_drill_failed": "Restore drill failed",
    "restore_break_glass": "Restore without two-factor (break-glass)",
    "database_unreachable": "Database unreachable",
    "error_rate": "High error rate",
    "worker_missing": "Celery worker missing",
    "beat_stopped": "Celery beat stopped",
}


@dataclass(frozen=True)
class AlertMessage:
    name: str
    state: Literal["firing", "resolved"]
    summary: str
    opened_at: datetime.datetime | None
    resolved_at: datetime.datetime | None = None

    @property
    def title(self) -> str:
        return ALERT_TITLES.get(self.name, self.name)

    @property
    def subject(self) -> str:
        head = "ALERT" if self.state == "firing" else "RESOLVED"
        first_line = (self.summary.splitlines() or [""])[0][:150]
        return f"{head} {self.title}: {first_line}" if first_line else f"{head} {self.title}"

    def body(self) -> str:
        lines = [
            f"{self.title} ({self.name}) on {socket.gethostname()}",
            "",
            self.summary,
            "",
            f"Opened:   {self.opened_at.isoformat() if self.opened_at else '-'}",
        ]
        if self.state == "resolved":
            lines.append(f"Resolved: {self.resolved_at.isoformat() if self.resolved_at else '-'}")
        else:
            lines.append("No further message until it recovers.")
        return "\n".join(lines) + "\n"

    def payload(self) -> dict[str, object]:
        return {
            "alert": self.name,
            "title": self.title,
            "state": self.state,
            "summary": self.summary,
            "host": socket.gethostname(),
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


def notify(message: AlertMessage) -> dict[str, bool]:
    """Send on every configured channel; returns which ones succeeded."""
    sent = {"email": False, "webhook": False}
    if settings.ADMINS:
        try:
            mail_admins(message.subject, message.body(), fail_silently=False)
            sent["email"] = True
        except Exception:
            logger.exception("Alert e-mail for %s failed", message.name)
    if settings.MONITORING_ALERT_WEBHOOK_URL:
        try:
            webhook_post(message.payload())
            sent["webhook"] = True
        except Exception:
            logger.exception("Alert webhook for %s failed", message.name)
    return sent


def webhook_post(payload: dict[str, object]) -> int:
    """POST the payload as JSON to MONITORING_ALERT_WEBHOOK_URL (http or https only, checked
    in settings) within MONITORING_ALERT_WEBHOOK_TIMEOUT; returns the status code."""
    request = urllib.request.Request(  # noqa: S310 - scheme validated in settings
        settings.MONITORING_ALERT_WEBHOOK_URL,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "schoolhouse-monitoring"},
        method="POST",
    )
    timeout = settings.MONITORING_ALERT_WEBHOOK_TIMEOUT
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return int(response.status)
