"""Disaster recovery: a new database server from nothing but the repository and the keys."""

from __future__ import annotations

import getpass
import os
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ._progress import progress_bar


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = (
        "Build the database of a NEW server from the point-in-time recovery repository "
        "(README, 'Disaster recovery'): on a machine where PITR_PG_DATA is missing or empty, "
        "with the PITR_* settings and the passphrase file of the lost server, restore the "
        "newest backup (or the one for --to-time), replay the archived WAL to the end (or to "
        "that moment), start it on a private socket, check the operator's two-factor code "
        "against the accounts it holds, and only then start it as the live database with "
        "archiving on. Each step is timed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--to-time",
            metavar="MOMENT",
            default="latest",
            help="'2026-12-01 10:32:05+00:00', or 'latest' (the default: everything archived).",
        )
        parser.add_argument("--operator", metavar="USERNAME", required=True)
        parser.add_argument(
            "--otp-token",
            metavar="CODE",
            default=os.environ.get("RESTORE_OTP_TOKEN", ""),
            help=(
                "Checked after the restore, against the restored accounts: give one of the "
                "operator's printed backup codes (they do not expire), or leave it out at a "
                "terminal to be asked for the authenticator's code then."
            ),
        )
        parser.add_argument(
            "--break-glass",
            metavar="REASON",
            default="",
            help="Emergency only: an operator with no authenticator (audited and alerted).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from accounts.services import OperatorRefused, restore_operator_check
        from backups.pgbackrest import PgBackRestError
        from backups.services.physical import PitrNotConfigured
        from backups.services.recovery import (
            RecoveryRefused,
            recovery_new_server,
            recovery_new_server_abandon,
            recovery_new_server_go_live,
            recovery_new_server_open,
            recovery_target_parse,
        )

        verbose = options["verbosity"] > 0
        say = self.stdout.write if verbose else (lambda message: None)
        clock = time.monotonic()
        steps: list[tuple[str, float]] = []
        try:
            target = recovery_target_parse(to_time=options["to_time"])
            with progress_bar(desc="restoring", total=100, unit="%", enabled=verbose) as tick:
                done = [0]

                def progress(percent: float) -> None:
                    tick(max(0, int(percent) - done[0]))
                    done[0] = max(done[0], int(percent))

                cluster = recovery_new_server(target=target, say=say, progress=progress)
        except (PitrNotConfigured, RecoveryRefused, PgBackRestError, OSError) as exc:
            raise CommandError(f"Recovery failed: {exc}") from exc
        steps.append(("restore and replay", cluster.seconds))
        mark = time.monotonic()
        recovery_new_server_open(cluster)
        reason = options["break_glass"].strip()
        token = options["otp_token"]
        if not token and not reason and sys.stdin.isatty():
            # Asked now, not before the restore: an authenticator's code lasts 30 s, and a
            # restore can take longer (a printed backup code, given up front, does not expire).
            token = getpass.getpass(f"Code from {options['operator']}'s authenticator: ")
        try:
            operator = restore_operator_check(
                username=options["operator"], token=token, break_glass=bool(reason)
            )
            if operator.user is None:
                # The accounts are in the restored database: "nobody to check" would mean
                # the backup itself holds none, which is no server to bring back.
                raise OperatorRefused("the restored database holds no accounts")
        except OperatorRefused as exc:
            recovery_new_server_abandon(cluster)
            raise CommandError(
                f"Recovery refused: {exc}. The restored files were removed; the server is as "
                "it was."
            ) from exc
        if operator.break_glass:
            from backups.services import restore_break_glass_record

            restore_break_glass_record(operator=operator.user, reason=reason, runs=[])
        steps.append(("operator check", round(time.monotonic() - mark, 1)))
        mark = time.monotonic()
        try:
            recovery_new_server_go_live(cluster, actor=operator.user, say=say)
        except RecoveryRefused as exc:
            raise CommandError(str(exc)) from exc
        steps.append(("start as the live database", round(time.monotonic() - mark, 1)))
        total = round(time.monotonic() - clock, 1)
        counts = ", ".join(
            f"{table.removeprefix('students_')} {n}"
            for table, n in cluster.row_counts.items()
            if table in {"students_school", "students_student", "students_attendancerecord"}
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Recovered to {target} from backup {cluster.backup_label}: last transaction "
                f"{cluster.recovered_to}, timeline {cluster.timeline}; {counts}."
            )
        )
        for name, seconds in steps:
            self.stdout.write(f"  {name}: {seconds} s")
        self.stdout.write(f"  total: {total} s")
        self.stdout.write(
            f"The database runs in {cluster.data_dir} and archives again; check with "
            "`manage.py pitr setup`, then start web, worker and beat."
        )
