"""Point-in-time recovery with pgBackRest: set-up, status, restore points, restore drills."""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = (
        "Point-in-time recovery (README, 'Point-in-time recovery'). `keys create` writes a "
        "random repository passphrase to PITR_CIPHER_PASS_FILE (refuses to replace one). "
        "`setup` writes pgBackRest's configuration from the PITR_* settings, creates the "
        "stanza in every repository and checks that PostgreSQL archives through it; it prints "
        "the postgresql.conf lines to set when it does not (exit 1). `config` prints the "
        "generated configuration (without secrets). `status` shows archiving, the newest "
        "backups and the repositories (`--json` for probes). `restore-point [NAME]` writes a "
        "named restore point into the WAL and records it; `restore-points` lists them. "
        "`mark` writes a drill mark: a restore point with every school's records fingerprinted "
        "at it (school writes wait a few milliseconds). `drill` runs the restore drill now: it "
        "restores a random mark of the last day (or `--mark NAME`; a new one if the day has "
        "none) into a throwaway cluster, compares every school's records with the mark's, "
        "has pgBackRest verify every repository, writes a receipt per school (admin: Drill "
        "receipts), and alerts and exits 1 if anything differs, the restore fails or a "
        "repository is damaged; the cluster is always deleted."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "action",
            choices=[
                "keys",
                "setup",
                "config",
                "status",
                "restore-point",
                "restore-points",
                "mark",
                "drill",
            ],
        )
        parser.add_argument("name", nargs="?", default="", help="keys: create; restore-point: NAME")
        parser.add_argument("--description", default="", help="restore-point: what it is before")
        parser.add_argument("--json", action="store_true", help="status: one JSON document")
        parser.add_argument(
            "--mark", default="", metavar="NAME", help="drill: restore to this drill mark"
        )

    def handle(self, *args: Any, action: str, name: str, **options: Any) -> None:
        from backups import pgbackrest
        from backups.locking import BackupBusy
        from backups.services.physical import PitrNotConfigured, pitr_require

        try:
            if action == "keys":
                return self._keys(name)
            pitr_require()
            if action == "config":
                self.stdout.write(pgbackrest.render_config())
                self.stdout.write("\n# postgresql.conf\n")
                for key, value in pgbackrest.postgresql_settings().items():
                    self.stdout.write(f"{key} = '{value}'")
            elif action == "setup":
                self._setup()
            elif action == "status":
                self._status(as_json=options["json"])
            elif action == "restore-point":
                self._restore_point(name, options["description"])
            elif action == "mark":
                self._mark(verbose=options["verbosity"] > 0)
            elif action == "drill":
                self._drill(options["mark"], verbose=options["verbosity"] > 0)
            else:
                self._restore_points()
        except (PitrNotConfigured, pgbackrest.PgBackRestError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except BackupBusy as exc:
            raise CommandError(str(exc)) from exc

    def _keys(self, what: str) -> None:
        if what != "create":
            raise CommandError("Usage: pitr keys create")
        path = settings.PITR_CIPHER_PASS_FILE
        if path.exists():
            raise CommandError(
                f"{path} exists: a repository's passphrase cannot change (README, "
                "'Point-in-time recovery': rotating it means a new stanza)."
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        self.stdout.write(self.style.SUCCESS(f"Created {path} (mode 0600)."))
        self.stdout.write(
            "Now copy it to your secret store: without it no physical backup can be restored."
        )

    def _setup(self) -> None:
        from backups.services.physical import pitr_setup

        report = pitr_setup(say=self.stdout.write)
        if report.archiving:
            self.stdout.write(
                self.style.SUCCESS(
                    "PostgreSQL archives its WAL through pgBackRest; `backup_now --physical "
                    "full` takes the first backup."
                )
            )
            return
        self.stderr.write(report.check_error)
        self.stderr.write("Set these in postgresql.conf (archive_mode needs a restart):")
        for key, value in report.postgresql.items():
            self.stderr.write(f"    {key} = '{value}'")
        raise CommandError("Archiving is not working yet (see above).")

    def _status(self, *, as_json: bool) -> None:
        from backups import pgbackrest
        from backups.services.physical import archive_status, newest_physical_run

        archive = archive_status()
        newest = newest_physical_run()
        try:
            sets = pgbackrest.backup_sets()
            repo_error = ""
        except pgbackrest.PgBackRestError as exc:
            sets, repo_error = [], str(exc)
        listed = [
            {"label": s["label"], "type": s["type"], "repo": s["database"]["repo-key"]}
            for s in sets
        ]
        status: dict[str, Any] = {
            "archive": archive.__dict__,
            "newest_backup": None
            if newest is None
            else {
                "run": newest.pk,
                "label": newest.label,
                "type": newest.backup_type,
                "finished_at": newest.finished_at.isoformat() if newest.finished_at else None,
            },
            "sets": listed,
            "repository_error": repo_error,
        }
        if as_json:
            self.stdout.write(json.dumps(status, indent=2, default=str))
            return
        age = archive.last_archived_age
        self.stdout.write(
            f"archiving: mode {archive.archive_mode}, last WAL {archive.last_archived_wal or '-'} "
            f"({'never' if age is None else f'{age:.0f} s ago'}), {archive.failed_count} failed"
        )
        self.stdout.write(
            "newest physical backup: "
            + ("none" if newest is None else f"#{newest.pk} {newest.label} ({newest.finished_at})")
        )
        for s in listed:
            self.stdout.write(f"  repo{s['repo']}: {s['label']} ({s['type']})")
        if repo_error:
            self.stderr.write(f"repository: {repo_error}")

    def _restore_point(self, name: str, description: str) -> None:
        from backups.services.physical import restore_point_create

        point = restore_point_create(name=name, description=description)
        if point is None:
            raise CommandError("Point-in-time recovery needs PostgreSQL.")
        self.stdout.write(
            self.style.SUCCESS(f"Restore point {point.name} at {point.lsn} ({point.created_at}).")
        )

    def _restore_points(self) -> None:
        from backups.models import RestorePoint

        for point in RestorePoint.objects.all()[:100]:
            self.stdout.write(
                f"{point.created_at:%Y-%m-%d %H:%M:%S%z}  {point.name}  {point.lsn}  "
                f"{point.get_reason_display()}  {point.description}"
            )

    def _mark(self, *, verbose: bool) -> None:
        from backups.services.drill import DrillFailed, drill_mark_create

        try:
            mark = drill_mark_create(say=self.stdout.write if verbose else lambda message: None)
        except DrillFailed as exc:
            raise CommandError(str(exc)) from exc
        schools = len([k for k in mark.fingerprint["schools"] if k])
        self.stdout.write(
            self.style.SUCCESS(
                f"Drill mark {mark.name} at {mark.lsn} ({mark.created_at}): {schools} school(s), "
                f"{len(mark.fingerprint['tables'])} tables fingerprinted."
            )
        )

    def _drill(self, mark_name: str, *, verbose: bool) -> None:
        from backups.services.drill import pitr_drill_run

        from ._progress import progress_bar

        say = self.stdout.write if verbose else (lambda message: None)
        with progress_bar(desc="restoring", total=100, unit="%", enabled=verbose) as tick:
            done = [0]

            def progress(percent: float) -> None:
                tick(max(0, int(percent) - done[0]))
                done[0] = max(done[0], int(percent))

            outcome = pitr_drill_run(mark_name=mark_name, say=say, progress=progress)
        for receipt in outcome.receipts:
            if receipt.school_id is None:
                continue
            line = f"  {receipt.school_name or receipt.school_id}: {receipt.result}"
            if receipt.details.get("differ"):
                line += " (differ: " + ", ".join(sorted(receipt.details["differ"])) + ")"
            self.stdout.write(line)
        district = outcome.district
        assert district is not None  # noqa: S101 - a drill always writes it
        figures = district.figures
        if outcome.passed:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Drill {outcome.drill} passed: {district.details.get('schools', 0)} "
                    f"school(s) equal to the mark; {figures}."
                )
            )
            return
        self.stderr.write(f"Drill {outcome.drill}: {figures}.")
        raise CommandError(
            f"Drill {outcome.drill} FAILED (administrators alerted; receipts in the admin):\n"
            + outcome.reason
        )
