"""Point-in-time recovery with pgBackRest: set-up, status, restore points."""

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
        "named restore point into the WAL and records it; `restore-points` lists them."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "action",
            choices=["keys", "setup", "config", "status", "restore-point", "restore-points"],
        )
        parser.add_argument("name", nargs="?", default="", help="keys: create; restore-point: NAME")
        parser.add_argument("--description", default="", help="restore-point: what it is before")
        parser.add_argument("--json", action="store_true", help="status: one JSON document")

    def handle(self, *args: Any, action: str, name: str, **options: Any) -> None:
        from backups import pgbackrest
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
            else:
                self._restore_points()
        except (PitrNotConfigured, pgbackrest.PgBackRestError, ValueError) as exc:
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
