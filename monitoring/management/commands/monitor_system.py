"""`manage.py monitor_system`: the health report for cron and external monitors."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand

STATE_LABELS = {"ok": "OK", "warning": "WARNING", "failed": "FAILED"}


class Command(BaseCommand):
    help = (
        "Check the platform's services (database, migrations, connection pool, cache, every "
        "storage, Celery workers and beat, backups, disk, memory) and print a status report. "
        "Exit status: 0 all OK; 1 a warning or a failed non-critical check; 2 a critical "
        "check failed (the site cannot serve). For cron: `monitor_system --alert || ...`."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print the report as JSON (for machines)."
        )
        parser.add_argument(
            "--alert",
            action="store_true",
            help=(
                "Also evaluate the alert rules and send e-mail/webhook notifications for "
                "incidents that open or resolve (deduplicated with the Celery job). Use it from "
                "cron when Celery itself may be the thing that is down."
            ),
        )

    def handle(self, *args: Any, json: bool = False, alert: bool = False, **options: Any) -> None:
        from monitoring.checks import health_report
        from monitoring.services import alerts_evaluate

        # Check failures are the report's content: the library's log lines would only
        # repeat them (and break the JSON on stdout).
        quiet = logging.getLogger("health_check")
        previous = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            report = health_report()
        finally:
            quiet.setLevel(previous)
        transitions = alerts_evaluate(report=report) if alert else []
        if json:
            self._print_json(report.as_dict() | {"alerts": [list(t) for t in transitions]})
        else:
            self._print_text(report, transitions)
        sys.exit(report.exit_code)

    def _print_json(self, data: dict[str, Any]) -> None:
        self.stdout.write(_json.dumps(data, indent=2, default=str))

    def _print_text(self, report: Any, transitions: Sequence[tuple[str, str]]) -> None:
        style = {"ok": self.style.SUCCESS, "warning": self.style.WARNING}
        status_style = style.get(report.status, self.style.ERROR)
        self.stdout.write(
            status_style(f"Schoolhouse: {report.status.upper()}")
            + f"  ({report.hostname}, {report.checked_at:%Y-%m-%d %H:%M:%S %Z})"
        )
        width = max(len(o.name) for o in report.outcomes) + 2
        for o in report.outcomes:
            label = STATE_LABELS[o.state]
            colour = {"ok": self.style.SUCCESS, "warning": self.style.WARNING}.get(
                o.state, self.style.ERROR
            )
            marker = "*" if o.critical else " "
            self.stdout.write(
                f"  {colour(f'{label:<8}')}{marker} {o.name:<{width}} {o.message}"
                f"  ({o.seconds * 1000:.0f} ms)"
            )
        self.stdout.write("  * critical: readiness fails with it")
        for name, change in transitions:
            self.stdout.write(f"  alert {name}: {change}, notification sent")


_json = json
