"""Restore a database backup (and optionally the documents)."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from backups.models import BackupRun
from backups.selectors import backup_run_resolve

from ._progress import progress_bar


class Command(BaseCommand):
    # No system checks: they import every URLconf and view (about 25 MiB), and a restore
    # must run whatever else is wrong with the deployment.
    requires_system_checks: list[str] = []
    help = (
        "Restore a database backup: `restore_backup <id|latest>`. Without --target-database it "
        "restores into a NEW database on the same server, migrates it forward, and only then "
        "swaps it in for the live one (the old one is kept as <name>_before_restore_<time>). "
        "With --target-database URL it restores into that database in one transaction. A "
        "database that is not empty is never overwritten without --force. A backup made by a "
        "newer release (migrations this code does not know) is refused. --media also restores "
        "the documents of the newest media backup taken no later than the database backup "
        "(or pass a media backup's id to restore documents only). Name yourself with "
        "--operator USERNAME (a district administrator) and give a current code from your "
        "authenticator with --otp-token or RESTORE_OTP_TOKEN. An operator with no authenticator "
        'is refused; only in an emergency, --break-glass "reason" lets them go on, recorded in '
        "the audit trail and alerted to the administrators. "
        "Point-in-time recovery (pgBackRest; README): `restore_backup --to-time "
        "'2026-12-01 10:32:05+00'` (or `--to-time latest`, or `--to-restore-point NAME`) "
        "builds a NEW cluster from the repository in --data-dir on --port (chosen when not "
        "given), replays the WAL to that moment and checks it; it stays running beside the "
        "live one until you drop it. With --switch it then becomes the live database, and the "
        "live data directory is kept aside until an operator deletes it. "
        "One school's mistake: `restore_backup --to-time T --school CODE --side` restores "
        "into a side cluster, shows what differs for that school between T and now "
        "(attendance, grades with their assessments, enrolments; narrow with --only and "
        "--section), and once you type the school's code (or give --yes) writes the old rows "
        "back in one transaction, audited, after a restore point; every other school and "
        "every later change outside that scope stays as it is. Rows added since T are kept "
        "unless --also-remove-added. Without a terminal and without --yes it only shows."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "backup", nargs="?", default="", help="Run id, or 'latest' (logical restores)."
        )
        pitr = parser.add_argument_group("point-in-time recovery")
        pitr.add_argument(
            "--to-time",
            metavar="MOMENT",
            default="",
            help="'2026-12-01 10:32:05+00:00' (with its offset), or 'latest'.",
        )
        pitr.add_argument(
            "--to-restore-point", metavar="NAME", default="", help="A named restore point."
        )
        pitr.add_argument(
            "--data-dir", metavar="DIR", help="Where the new cluster goes (a new directory)."
        )
        pitr.add_argument("--port", type=int, help="The new cluster's port (default: a free one).")
        pitr.add_argument(
            "--switch",
            action="store_true",
            help="Once checked, make the new cluster the live database (the old data "
            "directory is kept aside).",
        )
        undo = parser.add_argument_group(
            "one school's undo (with --to-time or --to-restore-point)",
            "Restore beside the live database and write one school's old rows back.",
        )
        undo.add_argument(
            "--school",
            metavar="CODE",
            default="",
            help="The school whose rows go back to the moment (its code); needs --side.",
        )
        undo.add_argument(
            "--side",
            action="store_true",
            help="Restore into a side cluster and compare (required with --school: the live "
            "database is never replaced by an undo).",
        )
        undo.add_argument(
            "--only",
            metavar="SCOPES",
            default="",
            help="Comma-separated: attendance, grades (with their assessments), enrolments "
            "(default: all three).",
        )
        undo.add_argument(
            "--section",
            metavar="CLASS",
            default="",
            help="One class only: its id, or its name (of the year current at the moment).",
        )
        undo.add_argument(
            "--yes",
            action="store_true",
            help="Write back without asking (scripts); otherwise you type the school's code.",
        )
        undo.add_argument(
            "--also-remove-added",
            action="store_true",
            help="Also delete the rows added since the moment (kept by default).",
        )
        undo.add_argument(
            "--skip-conflicts",
            action="store_true",
            help="Leave rows that cannot go back (their student left, their class is gone) as "
            "they are and write the others; by default one such row stops the whole undo.",
        )
        undo.add_argument(
            "--keep-side",
            action="store_true",
            help="Leave the side cluster running afterwards (default: stopped and deleted).",
        )
        parser.add_argument(
            "--target-database",
            metavar="URL",
            help="postgres://user:pass@host:port/name (or sqlite:///path): restore there instead.",
        )
        parser.add_argument(
            "--force", action="store_true", help="Replace a database (or documents) that exist."
        )
        parser.add_argument(
            "--media", action="store_true", help="Also restore documents from a media manifest."
        )
        # Two-factor re-check (accounts app). No prompt: restores also run from scripts and
        # CI, which have no terminal; the code comes from the option or the environment.
        parser.add_argument(
            "--operator",
            metavar="USERNAME",
            help="Your district administrator account (required); wrong codes are audited.",
        )
        parser.add_argument(
            "--otp-token",
            metavar="CODE",
            default=os.environ.get("RESTORE_OTP_TOKEN", ""),
            help=(
                "A current code from the operator's authenticator app (or a backup code); "
                "default: the RESTORE_OTP_TOKEN environment variable. Needed when the "
                "operator has two-factor set up."
            ),
        )
        parser.add_argument(
            "--break-glass",
            metavar="REASON",
            default="",
            help=(
                "Emergency only: restore although the operator has no authenticator set up. "
                "Give the reason (a ticket, what happened); it is audited and the "
                "administrators are alerted. It never replaces the code of an operator who "
                "has an authenticator."
            ),
        )
        parser.add_argument(
            "--source",
            choices=["local", "s3", "gcs"],
            help=(
                "Find the backup from the .json files beside the objects at this destination "
                "instead of the database's run history (for when that database is lost)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from backups.services import RestoreRefused, backup_restore, media_restore

        verbose = options["verbosity"] > 0
        self._check_undo_options(options)
        if options["to_time"] or options["to_restore_point"]:
            return self._to_moment(options, verbose)
        if options["switch"] or options["data_dir"] or options["port"]:
            raise CommandError(
                "--switch, --data-dir and --port go with --to-time or --to-restore-point."
            )
        ref = options["backup"]
        if not ref:
            raise CommandError("Name a backup (an id, or 'latest'), or give --to-time.")
        if options["source"] and options["media"]:
            raise CommandError(
                "--media needs the run history: restore the database with --source first, then "
                "run `restore_backup latest --media`."
            )
        if options["source"]:
            from backups.selectors import backup_run_from_destination

            run = backup_run_from_destination(ref, destination_name=options["source"])
        else:
            run = backup_run_resolve(ref)
        if run is None:
            raise CommandError(f"No backup {ref!r} to restore (see list_backups).")
        media_run: BackupRun | None = None
        if run.kind == BackupRun.Kind.MEDIA:
            media_run, run = run, None  # type: ignore[assignment]
        elif options["media"]:
            media_run = (
                BackupRun.objects.media()
                .restorable()
                .filter(started_at__lte=run.finished_at or run.started_at)
                .order_by("-started_at")
                .first()
            )
            if media_run is None:
                raise CommandError(
                    "--media: there is no media backup older than this database backup."
                )
        say = self.stdout.write if verbose else (lambda message: None)
        # Before anything is touched: a refused operator leaves every database as it was.
        self._operator(options, runs=[r for r in (run, media_run) if r])
        try:
            if run is not None:
                with progress_bar(desc="restoring", total=run.stored_size, enabled=verbose) as tick:
                    outcome = backup_restore(
                        run=run,
                        target_url=options["target_database"],
                        force=options["force"],
                        progress=tick,
                        say=say,
                    )
                self.stdout.write(
                    self.style.SUCCESS(f"Backup #{run.pk} restored into {outcome.database}.")
                )
                if outcome.previous:
                    self.stdout.write(
                        f"The previous database is kept as {outcome.previous}; drop it once you "
                        f'are satisfied: DROP DATABASE "{outcome.previous}";'
                    )
            if media_run is not None:
                with progress_bar(desc="documents", unit="obj", enabled=verbose) as tick:
                    counted = media_restore(run=media_run, force=options["force"], progress=tick)
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Media backup #{media_run.pk}: {counted.restored} document object(s) "
                        f"restored, {counted.skipped} already present."
                    )
                )
                if counted.erased:
                    # Purged (or erased on request) after this backup was taken: gone from
                    # the backups on purpose, and not brought back.
                    self.stdout.write(
                        f"{counted.erased} object(s) of this backup were erased since (their "
                        "documents were purged) and were not restored."
                    )
        except RestoreRefused as exc:
            raise CommandError(str(exc)) from exc

    def _operator(self, options: dict[str, Any], *, runs: list[BackupRun]) -> Any:
        """The two-factor operator check every restore passes first; returns the user."""
        from accounts.services import OperatorRefused, restore_operator_check

        if not options["operator"]:
            raise CommandError("Name yourself with --operator USERNAME (a district administrator).")
        reason = options["break_glass"].strip()
        try:
            operator = restore_operator_check(
                username=options["operator"], token=options["otp_token"], break_glass=bool(reason)
            )
        except OperatorRefused as exc:
            raise CommandError(f"Restore refused: {exc}") from exc
        if operator.note:
            self.stderr.write(self.style.WARNING(operator.note))
        if operator.break_glass and operator.user is not None:
            from backups.services import BreakGlassRefused, restore_break_glass_record

            try:
                restore_break_glass_record(operator=operator.user, reason=reason, runs=runs)
            except BreakGlassRefused as exc:
                raise CommandError(f"Restore refused: {exc}") from exc
        return operator.user

    def _to_moment(self, options: dict[str, Any], verbose: bool) -> None:
        from backups.pgbackrest import PgBackRestError
        from backups.services.physical import PitrNotConfigured, pitr_require
        from backups.services.recovery import (
            RecoveryRefused,
            recovery_plan,
            recovery_target_parse,
        )

        if options["backup"]:
            raise CommandError("A restore to a moment takes no backup id: the moment picks it.")
        try:
            pitr_require()
            target = recovery_target_parse(
                to_time=options["to_time"], to_restore_point=options["to_restore_point"]
            )
            # Before the operator's code is spent: a target out of reach says so at once.
            recovery_plan(target, wait_for_archive=False)
        except (PitrNotConfigured, RecoveryRefused, PgBackRestError) as exc:
            raise CommandError(str(exc)) from exc
        undo = self._undo_request(options) if options["school"] else None
        user = self._operator(options, runs=[])
        if user is None:
            # Nobody was checked: the live database is unreachable or holds no accounts. A
            # restore to a moment is not the way back then: recover_server checks the
            # operator against the accounts it restores before anything goes live.
            raise CommandError(
                "Restore refused: the operator could not be checked (the live database is "
                "unreachable or has no accounts). To rebuild a lost database server use "
                "`manage.py recover_server` (README, 'Disaster recovery'), which checks the "
                "operator against the restored accounts."
            )
        cluster = self._restore_cluster(options, target, user, verbose)
        if undo is not None:
            return self._school_undo(options, cluster, *undo, user=user)
        self._report_cluster(cluster, target)
        if not options["switch"]:
            self.stdout.write(
                "Inspect it, then stop and delete it, or run again with --switch to make such a "
                f"restore the live database: pg_ctl -D {cluster.data_dir} stop"
            )
            return
        self._switch(cluster, target, user, verbose)

    def _restore_cluster(
        self, options: dict[str, Any], target: Any, user: Any, verbose: bool
    ) -> Any:
        """A new cluster at `target` beside the live one (recovery_restore), with progress."""
        from pathlib import Path

        from backups.pgbackrest import PgBackRestError
        from backups.services.recovery import RecoveryRefused, recovery_restore

        say = self.stdout.write if verbose else (lambda message: None)
        try:
            with progress_bar(desc="restoring", total=100, unit="%", enabled=verbose) as tick:
                done = [0]

                def progress(percent: float) -> None:
                    tick(max(0, int(percent) - done[0]))
                    done[0] = max(done[0], int(percent))

                cluster = recovery_restore(
                    target=target,
                    data_dir=Path(options["data_dir"]) if options["data_dir"] else None,
                    port=options["port"],
                    actor=user,
                    say=say,
                    progress=progress,
                )
        except (RecoveryRefused, PgBackRestError, OSError) as exc:
            raise CommandError(f"Restore to {target} failed: {exc}") from exc
        return cluster

    def _report_cluster(self, cluster: Any, target: Any) -> None:
        counts = ", ".join(
            f"{table.removeprefix('students_')} {n}"
            for table, n in cluster.row_counts.items()
            if table
            in {
                "students_school",
                "students_student",
                "students_attendancerecord",
                "students_grade",
                "students_enrollment",
            }
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored to {target} from backup {cluster.backup_label} in {cluster.seconds} s: "
                f"last transaction {cluster.recovered_to}, timeline {cluster.timeline}; {counts}."
            )
        )
        self.stdout.write(
            f"The restored cluster runs in {cluster.data_dir} on 127.0.0.1:{cluster.port}."
        )

    def _switch(self, cluster: Any, target: Any, user: Any, verbose: bool) -> None:
        from backups.models import RestorePoint
        from backups.services.physical import restore_point_before
        from backups.services.recovery import RecoveryRefused, recovery_switch

        say = self.stdout.write if verbose else (lambda message: None)
        # Go back to just before the switch is one command too.
        point = restore_point_before(
            reason=RestorePoint.Reason.RESTORE,
            description=f"before the switch to {target}",
            actor=user,
        )
        try:
            kept = recovery_switch(cluster, actor=user, say=say)
        except (RecoveryRefused, OSError) as exc:
            raise CommandError(f"Switch failed: {exc}") from exc
        if point is not None:
            # Its row was written to the database just replaced: the restored one, from
            # before it, does not have it. The WAL does; record it again.
            from django.contrib.auth import get_user_model

            fields = {
                f.attname: getattr(point, f.attname)
                for f in RestorePoint._meta.concrete_fields
                if f.name not in {"id", "name"}
            }
            requester = point.requested_by_id
            if requester is None or not get_user_model().objects.filter(pk=requester).exists():
                fields["requested_by_id"] = None  # an account made after the moment restored
            RestorePoint.objects.get_or_create(name=point.name, defaults=fields)
            self.stdout.write(
                f"To go back to just before this restore: restore_backup --to-restore-point "
                f"{point.name} --switch"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"The restored cluster is now the live database. The previous data directory is "
                f"kept at {kept}; delete it once you are satisfied."
            )
        )

    # --- one school's undo ---------------------------------------------------------------------
    UNDO_OPTIONS = (
        "side",
        "only",
        "section",
        "yes",
        "also_remove_added",
        "skip_conflicts",
        "keep_side",
    )

    def _check_undo_options(self, options: dict[str, Any]) -> None:
        given = [name for name in self.UNDO_OPTIONS if options[name]]
        if given and not options["school"]:
            raise CommandError(f"--{given[0].replace('_', '-')} goes with --school CODE.")
        if not options["school"]:
            return
        if not (options["to_time"] or options["to_restore_point"]):
            raise CommandError(
                "--school puts one school's rows back as they were at a moment: give "
                "--to-time or --to-restore-point, and --side."
            )
        if options["switch"]:
            raise CommandError(
                "--school and --switch do not go together: --switch replaces the whole "
                "district's database, --school --side writes one school's old rows back."
            )
        if not options["side"]:
            raise CommandError(
                "--school needs --side: the moment is restored into a side cluster beside the "
                "live database, which is never replaced by an undo."
            )

    def _undo_request(self, options: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
        """The school and the scopes, checked before the operator's code is spent."""
        from backups.services.school_undo import SchoolUndoRefused, scopes_parse
        from students.models import School

        school = School.objects.filter(code=options["school"]).first()
        if school is None:
            raise CommandError(f"There is no school with the code {options['school']!r}.")
        try:
            scopes = scopes_parse(options["only"])
        except SchoolUndoRefused as exc:
            raise CommandError(str(exc)) from exc
        return school, scopes

    def _school_undo(
        self, options: dict[str, Any], cluster: Any, school: Any, scopes: Any, *, user: Any
    ) -> None:
        from backups.services.recovery import recovery_stop
        from backups.services.school_undo import (
            ADDED,
            SchoolUndoRefused,
            school_undo_apply,
            school_undo_plan,
        )

        self.stdout.write(
            f"Side cluster at {cluster.target}: restored in {cluster.seconds} s from backup "
            f"{cluster.backup_label} (last transaction {cluster.recovered_to})."
        )
        try:
            try:
                plan = school_undo_plan(
                    cluster=cluster, school=school, scopes=scopes, section=options["section"]
                )
            except SchoolUndoRefused as exc:
                raise CommandError(str(exc)) from exc
            self._print_plan(plan, options)
            writes = [c for c in plan.changes if c.action != ADDED or options["also_remove_added"]]
            if not writes:
                self.stdout.write(self.style.SUCCESS("Nothing to write back."))
                return
            if plan.conflicts and not options["skip_conflicts"]:
                raise CommandError(plan.refusal(plan.conflicts))
            if not self._confirmed(options, school, len(writes)):
                return
            try:
                outcome = school_undo_apply(
                    plan=plan,
                    actor=user,
                    remove_added=options["also_remove_added"],
                    skip_conflicts=options["skip_conflicts"],
                )
            except SchoolUndoRefused as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                self.style.SUCCESS(
                    f"Written back for {school.code} in {outcome.seconds} s: "
                    f"{outcome.recreated} row(s) re-created, {outcome.restored} restored, "
                    f"{outcome.removed} removed, {len(outcome.skipped)} skipped."
                )
            )
            for change, reason in outcome.skipped:
                self.stdout.write(f"  skipped {plan.describe(change)}: {reason}")
            self.stdout.write(
                f"Restore point before the undo: {outcome.restore_point}. To undo the undo: "
                f"restore_backup --to-restore-point {outcome.restore_point} --school "
                f"{school.code} --side --also-remove-added"
            )
        finally:
            if options["keep_side"]:
                self.stdout.write(
                    f"The side cluster keeps running in {cluster.data_dir} on "
                    f"127.0.0.1:{cluster.port}; stop it with: pg_ctl -D {cluster.data_dir} stop"
                )
            else:
                recovery_stop(cluster, remove=True)
                self.stdout.write("The side cluster was stopped and deleted.")

    def _confirmed(self, options: dict[str, Any], school: Any, count: int) -> bool:
        if options["yes"]:
            return True
        if not sys.stdin.isatty():
            # Scripts and CI: showing is safe, writing needs the explicit --yes.
            self.stdout.write(
                self.style.WARNING(
                    "Nothing was written (no terminal to confirm on): run again with --yes to "
                    "write these rows back."
                )
            )
            return False
        answer = input(
            f"Type the school's code ({school.code}) to write {count} row(s) back, or anything "
            "else to stop: "
        )
        if answer.strip() != school.code:
            self.stdout.write("Not confirmed: nothing was written.")
            return False
        return True

    HEADINGS = {
        "deleted": "deleted since then: re-created as they were",
        "changed": "changed since then: given back their values at the moment",
        "added": "added since then: kept (--also-remove-added removes them)",
    }
    MARKS = {"deleted": "-", "changed": "~", "added": "+"}
    FIELD_NAMES = {"section_id": "class", "student_id": "student", "assessment_id": "assessment"}

    def _print_plan(self, plan: Any, options: dict[str, Any]) -> None:
        """The differences: counts per table and kind, then the rows (25 per group unless
        -v 2), each with its student, class and date, old and new values side by side."""
        write = self.stdout.write
        scopes = ", ".join(
            "grades (with their assessments)" if s == "grades" else s for s in plan.scopes
        )
        where = f", class {plan.section_name}" if plan.section_name else ""
        write("")
        write(f"{plan.school.name} ({plan.school.code}){where}: {scopes}")
        write(f"What differs between {plan.target} and now (read in {plan.seconds} s):")
        write("")
        write(f"  {'':<13}{'deleted':>9}{'changed':>9}{'added':>9}")
        for name, counted in plan.counts().items():
            write(
                f"  {name:<13}{counted['deleted']:>9}{counted['changed']:>9}{counted['added']:>9}"
            )
        limit = None if options["verbosity"] > 1 else 25
        headings = dict(self.HEADINGS)
        if options["also_remove_added"]:
            headings["added"] = "added since then: removed (--also-remove-added)"
        for action in ("deleted", "changed", "added"):
            for kind in plan.kinds:
                rows = [c for c in plan.changes if c.kind is kind and c.action == action]
                if not rows:
                    continue
                write("")
                write(f"{kind.name.capitalize()} {headings[action]} ({len(rows)})")
                for change in rows[:limit]:
                    write(f"  {self.MARKS[action]} {plan.describe(change)}")
                    for name in change.differing:
                        label = self.FIELD_NAMES.get(name, name.replace("_", " "))
                        write(
                            f"      {label}: {plan.value(name, change.then[name])} then, "
                            f"{plan.value(name, change.now[name])} now"
                        )
                    if change.conflict:
                        write(self.style.ERROR(f"      cannot go back: {change.conflict}"))
                if limit is not None and len(rows) > limit:
                    write(f"  ... and {len(rows) - limit} more (-v 2 lists every row)")
        if not plan.changes:
            write("")
            write(f"Nothing differs for {plan.school.code} in this scope.")
        write("")
