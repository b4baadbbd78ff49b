"""Apply the retention policies."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Delete the database backups that each destination's retention policy (admin: "
        "Backups › Retention policies; default 7 daily, 4 weekly, 12 monthly) no longer keeps. "
        "The newest backup and the newest verified backup are always kept. Media objects are "
        "content-addressed and shared between runs, so they are never pruned."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only show what would be deleted."
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        from backups.services import backups_prune

        report = backups_prune(dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for name in sorted(set(report.kept) | set(report.deleted)):
            deleted = report.deleted.get(name, [])
            self.stdout.write(
                f"{name}: keeps {len(report.kept.get(name, []))}, {verb} {len(deleted)}"
                + (f" (runs {', '.join(map(str, deleted))})" if deleted else "")
            )
        for error in report.errors:
            self.stderr.write(error)
