"""Move an embedded SQLite installation onto PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from upgrade.sqlite_to_postgres import (
    MigrationFailed,
    MigrationRefused,
    Progress,
    TableResult,
    sqlite_migrate_to_postgres,
)


class BarProgress(Progress):
    """One progress bar per table, with rows/s."""

    def __init__(self, command: BaseCommand, quiet: bool) -> None:
        self.command = command
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.started = time.monotonic()

    def stage(self, message: str) -> None:
        self.command.stdout.write(f"==> [{time.monotonic() - self.started:6.1f} s] {message}")

    def table_started(self, table: str, rows: int) -> None:
        self.bar = tqdm(
            total=rows,
            desc=f"{table:<40}",
            unit=" rows",
            unit_scale=True,
            disable=self.quiet or rows == 0,
            leave=True,
            dynamic_ncols=True,
        )

    def rows_copied(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def table_finished(self, result: TableResult) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Command(BaseCommand):
    help = (
        "Copy an embedded Schoolhouse installation (SQLite) into PostgreSQL. The SQLite file "
        "is first copied with SQLite's online backup API (the original is never modified) and "
        "that copy is kept next to it; the target gets the schema from Django migrations, then "
        "every table of every installed app is copied with PostgreSQL COPY in one transaction, "
        "sequences are reset, and row counts and a per-table SHA-256 of the content are "
        "compared between source and target before committing. Any failure leaves the target "
        "exactly as it was and lists every rejected row with its table and primary key."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--sqlite-path",
            required=True,
            type=Path,
            help="The SQLite database file to copy (for example var/db.sqlite3).",
        )
        parser.add_argument(
            "--database",
            default="default",
            help="The PostgreSQL database alias to fill (default: default, that is DATABASE_URL).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Copy and verify everything, then roll back: nothing changes.",
        )
        parser.add_argument(
            "--truncate",
            action="store_true",
            help="Replace the target's existing data. Without it a target "
            "that holds data is refused.",
        )
        parser.add_argument(
            "--backup-dir",
            type=Path,
            default=None,
            help="Where to keep the pre-migration copy of the SQLite file (default: beside it).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        quiet = opts["verbosity"] == 0
        try:
            report = sqlite_migrate_to_postgres(
                sqlite_path=opts["sqlite_path"],
                database=opts["database"],
                dry_run=opts["dry_run"],
                truncate=opts["truncate"],
                backup_dir=opts["backup_dir"],
                progress=BarProgress(self, quiet),
            )
        except MigrationRefused as exc:
            raise CommandError(str(exc)) from exc
        except MigrationFailed as exc:
            for row in exc.report.rejected:
                self.stderr.write(f"  rejected  {row.table}  pk={row.pk}: {row.reason}")
            raise CommandError(str(exc)) from exc
        rate = report.rows / report.seconds if report.seconds else 0
        for table in report.tables:
            if table.source_rows and opts["verbosity"] > 1:
                self.stdout.write(
                    f"  {table.table:<45} {table.source_rows:>10} rows  "
                    f"{table.seconds:6.2f} s  sha256 {table.source_sha256[:12]} ok"
                )
        if report.backup_path:
            self.stdout.write(f"The SQLite file was saved as {report.backup_path}")
        verb = "Checked (dry run, nothing changed)" if report.dry_run else "Copied"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb}: {report.rows:,} rows in {len(report.tables)} tables in "
                f"{report.seconds:.1f} s ({rate:,.0f} rows/s); row counts and checksums match."
            )
        )
