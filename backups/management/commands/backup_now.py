"""Take a backup now, in this process."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from backups.locking import BackupBusy
from backups.models import BackupRun

from ._progress import progress_bar


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1_048_576:.1f} MiB"


class Command(BaseCommand):
    # No system checks: they import every URLconf and view (about 10 MiB more, and a broken
    # view module would stop the backup). A backup must run whatever else is wrong; `check`
    # and `migrate` run the checks at deploy time.
    requires_system_checks: list[str] = []
    help = (
        "Back up the database now (or, with --media, copy new documents): pg_dump (or SQLite's "
        "online backup) streamed through zstd and Tink AES-256-GCM encryption to every "
        "destination in BACKUP_DESTINATIONS, then each copy is read back and its size and "
        "sha256 confirmed. Exits 1 if the backup failed (the reason is recorded on the run and "
        "mailed to ADMINS), 2 if another backup is running."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--media",
            action="store_true",
            help="Back up document objects not yet at the destinations, plus a manifest.",
        )
        parser.add_argument(
            "--physical",
            choices=["full", "diff", "incr"],
            help=(
                "A pgBackRest physical backup into every PITR repository instead of a dump "
                "(point-in-time recovery; README)."
            ),
        )

    def handle(self, *args: Any, media: bool = False, **options: Any) -> None:
        from backups.services import backup_database_run, backup_media_run

        verbose = options["verbosity"] > 0
        if options.get("physical"):
            return self._physical(options["physical"], verbose)
        try:
            if media:
                with progress_bar(desc="documents", unit="obj", enabled=verbose) as tick:
                    run = backup_media_run(trigger=BackupRun.Trigger.MANUAL, progress=tick)
            else:
                with progress_bar(desc="dumped", enabled=verbose) as tick:
                    run = backup_database_run(trigger=BackupRun.Trigger.MANUAL, progress=tick)
        except BackupBusy as exc:
            self.stderr.write(str(exc))
            raise SystemExit(2) from exc
        if run.status != BackupRun.Status.SUCCEEDED:
            raise CommandError(f"Backup #{run.pk} failed: {run.error}")
        if media:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Media backup #{run.pk}: {run.objects_copied} object(s) copied, "
                    f"{run.objects_present} already there; manifest {run.object_key}."
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Backup #{run.pk} succeeded in {run.duration}: {_size(run.raw_size)} dumped, "
                f"{_size(run.stored_size)} stored, sha256 {run.sha256[:16]}…, key id {run.key_id}, "
                f"confirmed at {', '.join(d['name'] for d in run.destinations)}."
            )
        )

    def _physical(self, backup_type: str, verbose: bool) -> None:
        from backups.services.physical import PitrNotConfigured, physical_backup_run

        try:
            with progress_bar(
                desc=f"{backup_type} backup", total=100, unit="%", enabled=verbose
            ) as tick:
                done = [0.0]

                def progress(percent: float) -> None:
                    tick(max(0, int(percent - done[0])))
                    done[0] = max(done[0], float(int(percent)))

                run = physical_backup_run(
                    backup_type=backup_type, trigger=BackupRun.Trigger.MANUAL, progress=progress
                )
        except PitrNotConfigured as exc:
            raise CommandError(str(exc)) from exc
        except BackupBusy as exc:
            self.stderr.write(str(exc))
            raise SystemExit(2) from exc
        if run.status != BackupRun.Status.SUCCEEDED:
            raise CommandError(f"Backup #{run.pk} failed: {run.error}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Physical backup #{run.pk} ({run.get_backup_type_display()}, {run.label}) "
                f"succeeded in {run.duration}: {_size(run.raw_size)} of database, "
                f"{_size(run.stored_size)} added to the repository, WAL {run.wal_start} to "
                f"{run.wal_stop}, in {', '.join(d['repo'] for d in run.destinations)}."
            )
        )
