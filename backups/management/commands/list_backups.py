"""List backup runs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from backups.selectors import backup_runs_list


class Command(BaseCommand):
    help = (
        "List recent backup runs, newest first: id, kind, status, verification, start time, "
        "duration, stored size, key id and destinations. Use an id with restore_backup or "
        "verify_backup."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--kind", choices=["database", "media"], help="Only this kind.")
        parser.add_argument("--limit", type=int, default=20, help="How many (default 20).")

    def handle(self, *args: Any, kind: str | None = None, limit: int = 20, **options: Any) -> None:
        rows = list(backup_runs_list(kind=kind, limit=limit))
        if not rows:
            self.stdout.write("No backups yet. Take one with `manage.py backup_now`.")
            return
        header = (
            f"{'id':>5}  {'kind':<8} {'status':<9} {'verified':<8} {'started':<19} "
            f"{'took':>8} {'stored':>10}  {'key id':>10}  destinations"
        )
        self.stdout.write(header)
        for run in rows:
            took = str(run.duration).split(".")[0] if run.duration else "-"
            stored = f"{run.stored_size / 1_048_576:.1f} MiB" if run.stored_size else "-"
            where = ",".join(
                d["name"] + ("(pruned)" if d.get("pruned_at") else "") for d in run.destinations
            )
            self.stdout.write(
                f"{run.pk:>5}  {run.kind:<8} {run.status:<9} {run.verification or '-':<8} "
                f"{run.started_at:%Y-%m-%d %H:%M:%S} {took:>8} {stored:>10}  "
                f"{run.key_id or '-':>10}  {where}"
                + (f"\n       error: {run.error[:200]}" if run.error else "")
            )
