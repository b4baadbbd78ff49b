"""Apply the retention policies."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Delete the database backups and media manifests that each destination's retention "
        "policy (admin: Backups › Retention policies; default 7 daily, 4 weekly, 12 monthly) no "
        "longer keeps; the newest backup of each kind and the newest verified one are always "
        "kept. Then delete, at every destination, the copies of document content that has been "
        "purged (its document row and its stored object are both gone), so a purge or an "
        "erasure request reaches the backups by the next prune. Waits for a running backup."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only show what would be deleted."
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        from backups.locking import BackupBusy
        from backups.services import backups_prune

        try:
            report = backups_prune(dry_run=dry_run)
        except BackupBusy as exc:
            raise CommandError(str(exc)) from exc
        verb = "would delete" if dry_run else "deleted"
        for name in sorted(set(report.kept) | set(report.deleted)):
            deleted = report.deleted.get(name, [])
            self.stdout.write(
                f"{name}: keeps {len(report.kept.get(name, []))}, {verb} {len(deleted)}"
                + (f" (runs {', '.join(map(str, deleted))})" if deleted else "")
            )
        for name, names in sorted(report.erased.items()):
            verb = "would erase" if dry_run else "erased"
            self.stdout.write(f"{name}: {verb} {len(names)} purged document object(s)")
        for error in report.errors:
            self.stderr.write(error)
