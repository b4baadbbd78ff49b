"""Continuous archiving and physical backups with pgBackRest: set-up, the scheduled full and
differential backups (each a BackupRun), named restore points, and the figures the health
check reads.

pgBackRest archives the WAL itself (PostgreSQL's archive_command); the platform asks for the
backups, records them, prunes them by the one retention policy, and watches both.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from audit.services import Actor, as_user, audit_record
from school_site.db import maintenance_settings

from .. import pgbackrest
from ..locking import backup_lock
from ..models import BackupRun, RestorePoint
from .runs import backup_run_fail, backup_run_start, backup_run_succeed, heartbeat

logger = logging.getLogger(__name__)


class PitrNotConfigured(RuntimeError):
    pass


def pitr_require() -> None:
    if not settings.PITR_ENABLED:
        raise PitrNotConfigured(
            "Point-in-time recovery is not configured: set PITR_PG_DATA to PostgreSQL's data "
            "directory (README, 'Point-in-time recovery'). It needs PostgreSQL; embedded mode "
            "(SQLite) keeps its file backups."
        )


@dataclass
class SetupReport:
    config: str
    postgresql: dict[str, str]
    archiving: bool
    check_error: str = ""
    steps: list[str] = field(default_factory=list)


def _live_archive_settings() -> dict[str, str]:
    with maintenance_connection() as cursor:
        cursor.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
            [["wal_level", "archive_mode", "archive_command", "archive_timeout"]],
        )
        return dict(cursor.fetchall())


def pitr_setup(*, say: Callable[[str], None] = lambda message: None) -> SetupReport:
    """Write the configuration, create the stanza (idempotent) and check that PostgreSQL
    archives through it. Never changes PostgreSQL's settings: it reports what they must be."""
    pitr_require()
    path = pgbackrest.write_config()
    report = SetupReport(
        config=str(path), postgresql=pgbackrest.postgresql_settings(), archiving=False
    )
    say(f"wrote {path} and {pgbackrest.secrets_path()} (0600)")
    pgbackrest.run("stanza-create", timeout=600)
    report.steps.append("stanza-create")
    say(f"stanza {settings.PITR_STANZA} ready in {', '.join(settings.PITR_REPOS)}")
    live = _live_archive_settings()
    wanted = report.postgresql
    wrong = {
        name: live.get(name, "")
        for name in ("wal_level", "archive_mode")
        if live.get(name, "") != wanted[name]
        and not (name == "wal_level" and live.get(name) == "logical")
    }
    command = live.get("archive_command", "")
    if settings.PITR_PG_HOST:
        # The database host's own pgBackRest pushes the WAL; `check` below proves it lands.
        if "archive-push" not in command or f"--stanza={settings.PITR_STANZA}" not in command:
            wrong["archive_command"] = command
    elif command != wanted["archive_command"]:
        wrong["archive_command"] = command
    if int(live.get("archive_timeout") or 0) not in range(1, settings.PITR_ARCHIVE_TIMEOUT + 1):
        wrong["archive_timeout"] = live.get("archive_timeout", "")
    if wrong:
        report.check_error = "PostgreSQL does not archive through pgBackRest yet: " + ", ".join(
            f"{name} is {value!r}" for name, value in wrong.items()
        )
        return report
    try:
        pgbackrest.run("check", timeout=600)
    except pgbackrest.PgBackRestError as exc:
        report.check_error = str(exc)
        return report
    report.archiving = True
    report.steps.append("check")
    return report


class maintenance_connection:  # noqa: N801 - a context manager, used like a function
    """A cursor on the live database as the maintenance role (restore points and archiver
    statistics need more than the application's role may do)."""

    def __enter__(self) -> Any:
        import psycopg

        db = maintenance_settings()
        self._conn = psycopg.connect(
            host=db.get("HOST") or None,
            port=db.get("PORT") or None,
            dbname=db["NAME"],
            user=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            autocommit=True,
            connect_timeout=10,
            application_name="schoolhouse-pitr",
        )
        return self._conn.cursor()

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


# --- physical backups ------------------------------------------------------------------------
def _set_fields(entry: dict[str, Any]) -> dict[str, Any]:
    info = entry.get("info", {})
    return {
        "label": entry["label"],
        "prior_label": entry.get("prior") or "",
        "backup_type": entry.get("type", ""),
        "wal_start": entry.get("archive", {}).get("start") or "",
        "wal_stop": entry.get("archive", {}).get("stop") or "",
        "lsn_start": entry.get("lsn", {}).get("start") or "",
        "lsn_stop": entry.get("lsn", {}).get("stop") or "",
        "raw_size": info.get("size"),
        "stored_size": info.get("repository", {}).get("delta"),
    }


def _sets_of(repo_index: int) -> list[dict[str, Any]]:
    return [
        s for s in pgbackrest.backup_sets() if s.get("database", {}).get("repo-key") == repo_index
    ]


def physical_backup_run(
    *,
    backup_type: str = BackupRun.BackupType.FULL,
    trigger: str = BackupRun.Trigger.MANUAL,
    actor: Actor = None,
    progress: Callable[[float], None] | None = None,
) -> BackupRun:
    """Take a full, differential or incremental backup with pgBackRest into every repository
    and record it. Returns the run, failed (and alerted) if pgBackRest failed. A
    differential or incremental with no full to build on is taken as a full by pgBackRest,
    and recorded as what it was. Raises BackupBusy when another backup holds the lock."""
    pitr_require()
    if backup_type not in {"full", "diff", "incr"}:
        raise ValueError(f"backup type must be full, diff or incr, not {backup_type!r}")
    with backup_lock(wait_seconds=10):
        run = backup_run_start(kind=BackupRun.Kind.PHYSICAL, trigger=trigger, actor=actor)
        run.engine = "postgresql"
        run.backup_type = backup_type
        run.destinations = [{"name": r.kind, "repo": r.name} for r in pgbackrest.repos()]
        run.save(update_fields=["engine", "backup_type", "destinations"])
        try:
            with heartbeat(run):
                pgbackrest.write_config()
                taken: list[dict[str, Any]] = []
                destinations = []
                for repo in pgbackrest.repos():
                    before = {s["label"] for s in _sets_of(repo.index)}
                    pgbackrest.run(
                        "backup", f"--type={backup_type}", f"--repo={repo.index}", progress=progress
                    )
                    new = [s for s in _sets_of(repo.index) if s["label"] not in before]
                    if not new:
                        raise pgbackrest.PgBackRestError(
                            f"pgBackRest reported no new backup set in {repo.name} ({repo.kind})."
                        )
                    newest = max(new, key=lambda s: s["timestamp"]["stop"])
                    taken.append(newest)
                    destinations.append(
                        {
                            "name": repo.kind,
                            "repo": repo.name,
                            "label": newest["label"],
                            "confirmed": True,
                        }
                    )
                fields = _set_fields(taken[0])
                fields["destinations"] = destinations
                with maintenance_connection() as cursor:
                    cursor.execute("SHOW server_version")
                    fields["server_version"] = cursor.fetchone()[0]
            run = backup_run_succeed(run=run, **fields)
        except Exception as exc:
            logger.exception("physical backup %s failed", run.pk)
            return backup_run_fail(run=run, error=str(exc))
    audit_record(
        actor=actor,
        action="backup_physical",
        target=run,
        changes={"label": run.label, "type": run.backup_type},
    )
    return run


# --- restore points --------------------------------------------------------------------------
NAME_OK = re.compile(r"^[A-Za-z0-9_.:-]{1,63}$")


def restore_point_name(reason: str, when: datetime.datetime | None = None) -> str:
    when = (when or timezone.now()).astimezone(datetime.UTC)
    return f"{reason}-{when:%Y%m%dT%H%M%S.%f}Z"[:63]


def restore_point_create(
    *,
    reason: str = RestorePoint.Reason.MANUAL,
    name: str = "",
    description: str = "",
    school_id: int | None = None,
    actor: Actor = None,
) -> RestorePoint | None:
    """Write a named restore point into the WAL (`pg_create_restore_point`) and record it, so
    that "go back to just before this" is one command. None when point-in-time recovery is
    off (embedded mode, or PITR_PG_DATA unset): there is no WAL archive to go back through."""
    if not settings.PITR_ENABLED or connections["default"].vendor != "postgresql":
        return None
    name = name or restore_point_name(reason)
    if not NAME_OK.match(name):
        raise ValueError("A restore point's name is 1-63 letters, digits, '.', '_', ':' or '-'.")
    if RestorePoint.objects.filter(name=name).exists():
        raise ValueError(f"There is already a restore point named {name!r}.")
    with maintenance_connection() as cursor:
        cursor.execute(
            "SELECT lsn::text, pg_walfile_name(lsn), clock_timestamp() "
            "FROM pg_create_restore_point(%s) AS lsn",
            [name],
        )
        lsn, wal_file, created_at = cursor.fetchone()
    point = RestorePoint.objects.create(
        name=name,
        reason=reason,
        description=description[:300],
        created_at=created_at,
        lsn=lsn,
        wal_file=wal_file,
        school_id=school_id,
        requested_by=as_user(actor),
    )
    audit_record(
        actor=actor,
        action="restore_point_create",
        target=point,
        changes={"name": name, "lsn": lsn, "reason": reason},
    )
    return point


def restore_point_before(
    *, reason: str, description: str = "", school_id: int | None = None, actor: Actor = None
) -> RestorePoint | None:
    """`restore_point_create` for the hooks before risky operations: a failure to write one
    is logged and alerted, and the operation goes on (the WAL archive still covers it)."""
    try:
        return restore_point_create(
            reason=reason, description=description, school_id=school_id, actor=actor
        )
    except Exception as exc:
        from .alerts import backup_alert

        logger.exception("could not create a restore point before %s", reason)
        backup_alert(
            name="pitr_archiving",
            summary=f"No restore point could be made before a {reason}",
            detail=str(exc),
        )
        return None


def pitr_check_run() -> dict[str, Any]:
    """Run `pgbackrest check`, keep the result for the health check (`selectors.pitr_health`)
    and alert when it fails."""
    from django.core.cache import cache

    from ..selectors import PITR_CHECK_CACHE_KEY
    from .alerts import backup_alert

    pitr_require()
    result: dict[str, Any] = {"ok": True, "at": timezone.now().isoformat(), "error": ""}
    try:
        pgbackrest.write_config()
        pgbackrest.run("check", timeout=600)
    except pgbackrest.PgBackRestError as exc:
        result.update(ok=False, error=str(exc))
        backup_alert(name="pitr_archiving", summary="pgbackrest check failed", detail=str(exc))
    cache.set(PITR_CHECK_CACHE_KEY, result, timeout=24 * 3600)
    return result


# --- figures for the health check ------------------------------------------------------------
@dataclass
class ArchiveStatus:
    archived_count: int
    last_archived_wal: str
    last_archived_age: float | None  # seconds
    failed_count: int
    last_failed_wal: str
    last_failed_age: float | None
    archive_mode: str
    current_wal: str


def archive_status() -> ArchiveStatus:
    """pg_stat_archiver of the live cluster, with ages in seconds."""
    with maintenance_connection() as cursor:
        cursor.execute(
            "SELECT archived_count, coalesce(last_archived_wal, ''), "
            "extract(epoch FROM now() - last_archived_time), failed_count, "
            "coalesce(last_failed_wal, ''), extract(epoch FROM now() - last_failed_time), "
            "current_setting('archive_mode'), pg_walfile_name(pg_current_wal_lsn()) "
            "FROM pg_stat_archiver"
        )
        row = cursor.fetchone()
    return ArchiveStatus(
        archived_count=row[0],
        last_archived_wal=row[1],
        last_archived_age=float(row[2]) if row[2] is not None else None,
        failed_count=row[3],
        last_failed_wal=row[4],
        last_failed_age=float(row[5]) if row[5] is not None else None,
        archive_mode=row[6],
        current_wal=row[7],
    )


def newest_physical_run() -> BackupRun | None:
    return BackupRun.objects.physical().restorable().order_by("-finished_at").first()
