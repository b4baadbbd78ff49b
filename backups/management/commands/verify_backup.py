"""Verify a backup: checksums, decryption, pg_restore --list, a restore drill."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from backups.locking import BackupBusy
from backups.models import BackupRun
from backups.selectors import backup_run_resolve

from ._progress import progress_bar


class Command(BaseCommand):
    help = (
        "Verify a database backup end to end: re-read every destination's copy and check its "
        "size and sha256, decrypt it, read its table of contents with pg_restore --list, "
        "restore it into a scratch database (dropped afterwards) and compare every table's "
        "row count with the count taken at dump time. The result is recorded on the run. "
        "Exits 1 when verification fails."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "backup", nargs="?", default="latest", help="Run id, or 'latest' (the default)."
        )

    def handle(self, *args: Any, backup: str = "latest", **options: Any) -> None:
        from backups.services import VerificationFailed, backup_verify

        run = backup_run_resolve(backup)
        if run is None:
            raise CommandError(f"No database backup {backup!r} to verify (see list_backups).")
        try:
            with progress_bar(
                desc=f"restore drill #{run.pk}",
                total=run.stored_size,
                enabled=options["verbosity"] > 0,
            ) as tick:
                run = backup_verify(run=run, progress=tick)
        except (VerificationFailed, BackupBusy) as exc:
            raise CommandError(str(exc)) from exc
        report = run.verification_report
        if run.verification != BackupRun.Verification.PASSED:
            raise CommandError(f"Backup #{run.pk} failed verification: {report.get('error')}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Backup #{run.pk} verified in {report.get('seconds')} s: checksums match at "
                f"{', '.join(report.get('destinations', {}))}; {report.get('toc_entries', '-')} "
                f"archive entries; {report.get('tables')} tables and {report.get('rows')} rows "
                "restored with the counts taken at dump time."
            )
        )
