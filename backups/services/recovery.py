"""Restore to a moment: pgBackRest builds a NEW cluster from the repository and PostgreSQL
replays the archived WAL up to the target; the platform picks the backup set, starts the
cluster on its own port, checks what it recovered, and only on request (`recovery_switch`)
makes it the live one, keeping the old data directory until an operator deletes it.
"""

from __future__ import annotations

import datetime
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from audit.services import Actor, audit_record

from .. import pgbackrest
from ..models import RestorePoint
from .physical import archive_status, maintenance_connection, pitr_require


class RecoveryRefused(RuntimeError):
    """The target cannot be reached, or the restored cluster failed its checks."""


@dataclass(frozen=True)
class RecoveryTarget:
    kind: str  # "time", "name" or "latest"
    moment: datetime.datetime | None = None
    name: str = ""

    def __str__(self) -> str:
        if self.kind == "time" and self.moment:
            return self.moment.isoformat()
        return self.name if self.kind == "name" else "latest"


def recovery_target_parse(*, to_time: str = "", to_restore_point: str = "") -> RecoveryTarget:
    """`--to-time` (an ISO moment with its offset, or `latest`) or `--to-restore-point`."""
    if bool(to_time) == bool(to_restore_point):
        raise RecoveryRefused("Give exactly one of --to-time and --to-restore-point.")
    if to_restore_point:
        return RecoveryTarget(kind="name", name=to_restore_point)
    if to_time.strip().lower() == "latest":
        return RecoveryTarget(kind="latest")
    try:
        moment = datetime.datetime.fromisoformat(to_time.strip())
    except ValueError:
        raise RecoveryRefused(
            f"--to-time {to_time!r} is not a moment: write it like '2026-12-01 10:32:05+00:00' "
            "(or 'latest')."
        ) from None
    if moment.tzinfo is None:
        raise RecoveryRefused(
            f"--to-time {to_time!r} has no time zone: add one, as in '{to_time}+00:00'."
        )
    return RecoveryTarget(kind="time", moment=moment)


@dataclass
class RestoredCluster:
    data_dir: Path
    port: int
    socket_dir: Path
    target: RecoveryTarget
    backup_label: str
    started_at: datetime.datetime
    seconds: float = 0.0
    # The last transaction replayed (the moment the cluster now reflects).
    recovered_to: datetime.datetime | None = None
    timeline: int | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, dbname: str) -> str:
        return f"postgres://{settings.PITR_PG_USER}@127.0.0.1:{self.port}/{dbname}"


def _stamp(ts: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


def _choose_set(target: RecoveryTarget, sets: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest backup set that ended before the target (any set for `latest`)."""
    if not sets:
        raise RecoveryRefused(
            "There is no physical backup yet: take one with `backup_now --physical full`."
        )
    ordered = sorted(sets, key=lambda s: s["timestamp"]["stop"])
    if target.kind == "latest":
        return ordered[-1]
    if target.kind == "name":
        point = RestorePoint.objects.filter(name=target.name).first()
        if point is None:
            raise RecoveryRefused(
                f"There is no restore point named {target.name!r} (see `pitr restore-points`)."
            )
        moment = point.created_at
    else:
        assert target.moment is not None  # noqa: S101 - parse() sets it for "time"
        moment = target.moment
    before = [s for s in ordered if _stamp(s["timestamp"]["stop"]) <= moment]
    if not before:
        oldest = _stamp(ordered[0]["timestamp"]["stop"])
        raise RecoveryRefused(
            f"{target} is before the oldest backup: the earliest moment that can be restored "
            f"is {oldest.isoformat()} (the end of backup {ordered[0]['label']})."
        )
    return before[-1]


def _check_reachable(target: RecoveryTarget) -> None:
    """A time must not be in the future, nor past the WAL archived so far. The live cluster
    is asked to close its current WAL segment first, so that a moment a few seconds ago is
    reachable (when the live cluster is down, what the archive holds is what there is)."""
    if target.kind != "time" or target.moment is None:
        return
    now = timezone.now()
    if target.moment > now:
        raise RecoveryRefused(f"{target} is in the future (it is now {now.isoformat()}).")
    try:
        with maintenance_connection() as cursor:
            cursor.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 2 * settings.PITR_ARCHIVE_TIMEOUT
        while time.monotonic() < deadline:
            status = archive_status()
            if status.last_archived_age is not None:
                last = now - datetime.timedelta(seconds=status.last_archived_age)
                if last >= target.moment:
                    return
            time.sleep(0.5)
        status = archive_status()
    except RecoveryRefused:
        raise
    except Exception:
        return  # the live cluster is gone: the archive decides, and PostgreSQL reports
    age = status.last_archived_age
    newest = "never" if age is None else (timezone.now() - datetime.timedelta(seconds=age))
    raise RecoveryRefused(
        f"{target} is after the newest archived WAL ({newest}): archiving is behind "
        f"({status.failed_count} failed attempts, last failed {status.last_failed_wal or '-'})."
    )


def recovery_plan(target: RecoveryTarget, *, wait_for_archive: bool = True) -> dict[str, Any]:
    """The backup set a restore to `target` starts from, after checking that the target can
    be reached (RecoveryRefused with the moment that would work, if not). Without
    `wait_for_archive`, a quick look (the future, the oldest backup) that does not wait for
    the live cluster's WAL to be archived: what a command checks before the operator's
    two-factor code, which must still be current when it is checked."""
    pitr_require()
    pgbackrest.write_config()
    if wait_for_archive:
        _check_reachable(target)
    elif target.kind == "time" and target.moment and target.moment > timezone.now():
        raise RecoveryRefused(f"{target} is in the future (it is now {timezone.now()}).")
    return _choose_set(target, pgbackrest.backup_sets())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chown(path: Path) -> None:
    if owner := pgbackrest._owner():
        os.chown(path, *owner)


def _pg(binary: str) -> str:
    return str(settings.PITR_PG_BIN / binary)


MINIMAL_CONF = """# Written by the platform's restore: the backup held no postgresql.conf
# (Debian keeps it in /etc/postgresql). Only what a restored cluster needs to start.
listen_addresses = '127.0.0.1'
max_connections = 50
shared_buffers = 128MB
"""
MINIMAL_HBA = """local all all peer map=restore
host all all 127.0.0.1/32 scram-sha-256
"""


def _ensure_config_files(data_dir: Path) -> None:
    if not (data_dir / "postgresql.conf").exists():
        (data_dir / "postgresql.conf").write_text(MINIMAL_CONF)
        _chown(data_dir / "postgresql.conf")
    if not (data_dir / "pg_hba.conf").exists():
        (data_dir / "pg_hba.conf").write_text(MINIMAL_HBA)
        (data_dir / "pg_ident.conf").write_text(
            f"restore root {settings.PITR_PG_USER}\n"
            f"restore {settings.PITR_OS_USER or settings.PITR_PG_USER} {settings.PITR_PG_USER}\n"
        )
        _chown(data_dir / "pg_hba.conf")
        _chown(data_dir / "pg_ident.conf")


def _pg_ctl(data_dir: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    cmd = pgbackrest.as_os_user([_pg("pg_ctl"), "-D", str(data_dir), *args])
    return subprocess.run(  # noqa: S603 - our argv, no shell
        cmd, capture_output=True, text=True, timeout=timeout
    )


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def recovery_connect(cluster: RestoredCluster, dbname: str = "postgres") -> Any:
    """A connection to a restored cluster over its private socket, as its superuser."""
    import psycopg

    return psycopg.connect(
        host=str(cluster.socket_dir),
        port=cluster.port,
        dbname=dbname,
        user=settings.PITR_PG_USER,
        autocommit=True,
        connect_timeout=10,
    )


def recovery_restore(
    *,
    target: RecoveryTarget,
    data_dir: Path | None = None,
    port: int | None = None,
    actor: Actor = None,
    say: Callable[[str], None] = lambda message: None,
    progress: Callable[[float], None] | None = None,
    wait_seconds: float = 3600,
) -> RestoredCluster:
    """Build a new cluster at `target` from the repository and start it on `port` (free if
    not given), checked and running; the live cluster is not touched."""
    chosen = recovery_plan(target)
    started = timezone.now()
    clock = time.monotonic()
    if data_dir is None:
        data_dir = settings.PITR_RESTORE_DIR / f"restore-{started:%Y%m%dT%H%M%S}"
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RecoveryRefused(f"{data_dir} is not empty: give a new directory with --data-dir.")
    cluster = _restore_and_start(
        target=target,
        chosen=chosen,
        data_dir=data_dir,
        port=port or _free_port(),
        listen="127.0.0.1",
        started=started,
        say=say,
        progress=progress,
        wait_seconds=wait_seconds,
    )
    cluster.seconds = round(time.monotonic() - clock, 1)
    audit_record(
        actor=actor,
        action="restore_to_moment",
        target=None,
        changes={
            "target": str(target),
            "backup": chosen["label"],
            "data_dir": str(data_dir),
            "port": cluster.port,
            "recovered_to": cluster.recovered_to.isoformat() if cluster.recovered_to else None,
        },
    )
    return cluster


def _restore_and_start(
    *,
    target: RecoveryTarget,
    chosen: dict[str, Any],
    data_dir: Path,
    port: int,
    listen: str,
    started: datetime.datetime,
    say: Callable[[str], None],
    progress: Callable[[float], None] | None,
    wait_seconds: float,
) -> RestoredCluster:
    """pgBackRest restores `chosen` into `data_dir` (a new directory, made the OS user's),
    set to replay to `target` and then promote, with archiving off; PostgreSQL then starts
    on `port` and its own socket directory, and is checked once out of recovery."""
    for directory in (data_dir.parent, data_dir):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _chown(directory)
    os.chmod(data_dir, 0o700)
    socket_dir = data_dir.parent / f"{data_dir.name}.sock"
    socket_dir.mkdir(exist_ok=True, mode=0o700)
    _chown(socket_dir)
    cluster = RestoredCluster(
        data_dir=data_dir,
        port=port,
        socket_dir=socket_dir,
        target=target,
        backup_label=chosen["label"],
        started_at=started,
    )
    args = [
        "restore",
        f"--set={chosen['label']}",
        f"--repo={chosen['database']['repo-key']}",
        f"--pg1-path={data_dir}",
        # Not into the live one's history until it is switched (or goes live).
        "--archive-mode=off",
    ]
    if target.kind == "time":
        args += ["--type=time", f"--target={target}", "--target-action=promote"]
    elif target.kind == "name":
        args += ["--type=name", f"--target={target.name}", "--target-action=promote"]
    say(f"restoring backup {chosen['label']} into {data_dir}")
    pgbackrest.run(*args, progress=progress, timeout=wait_seconds)
    _ensure_config_files(data_dir)
    say(f"replaying WAL to {target} on port {port}")
    options = (
        f"-p {port} -c listen_addresses='{listen}' "
        f"-c unix_socket_directories={socket_dir} -c archive_mode=off"
    )
    done = _pg_ctl(
        data_dir, "-l", str(cluster.log), "-o", options, "-w", "-t", str(int(wait_seconds)), "start"
    )
    if done.returncode:
        raise RecoveryRefused(
            f"The restored cluster did not start: {done.stderr.strip()}\n{_log_tail(cluster.log)}"
        )
    _wait_promoted(cluster, wait_seconds)
    _check(cluster)
    return cluster


def _wait_promoted(cluster: RestoredCluster, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            with recovery_connect(cluster) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except Exception:
            status = _pg_ctl(cluster.data_dir, "status", timeout=30)
            if status.returncode:  # the server stopped: recovery failed
                raise RecoveryRefused(
                    f"Recovery to {cluster.target} failed:\n{_log_tail(cluster.log)}"
                ) from None
        time.sleep(0.5)
    raise RecoveryRefused(f"Recovery to {cluster.target} did not finish in {wait_seconds} s.")


def _check(cluster: RestoredCluster) -> None:
    """What was recovered: the moment, the timeline, and the school record's tables counted
    in the platform's database."""
    dbname = str(settings.DATABASES["default"]["NAME"])
    with recovery_connect(cluster) as conn:
        row = conn.execute(
            "SELECT pg_last_xact_replay_timestamp(), timeline_id FROM pg_control_checkpoint()"
        ).fetchone()
        cluster.recovered_to, cluster.timeline = row[0], row[1]
        cluster.databases = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1"
            ).fetchall()
        ]
    if dbname not in cluster.databases:
        raise RecoveryRefused(
            f"The restored cluster has no database {dbname!r} (it has {cluster.databases})."
        )
    with recovery_connect(cluster, dbname) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename LIKE ANY (ARRAY['students\\_%', 'django\\_migrations']) ORDER BY 1"
            ).fetchall()
        ]
        if "django_migrations" not in tables:
            raise RecoveryRefused(f"The restored database {dbname!r} has no Django tables.")
        for table in tables:
            cluster.row_counts[table] = conn.execute(
                f'SELECT count(*) FROM "{table}"'  # noqa: S608 - names from pg_tables
            ).fetchone()[0]
    if cluster.target.kind == "time" and cluster.target.moment and cluster.recovered_to:
        if cluster.recovered_to > cluster.target.moment:
            raise RecoveryRefused(
                f"The restored cluster went past the target: its last transaction is of "
                f"{cluster.recovered_to.isoformat()}, after {cluster.target}."
            )


def recovery_stop(cluster: RestoredCluster, *, remove: bool = False) -> None:
    _pg_ctl(cluster.data_dir, "-m", "fast", "stop", timeout=300)
    if remove:
        shutil.rmtree(cluster.data_dir, ignore_errors=True)
        shutil.rmtree(cluster.socket_dir, ignore_errors=True)


def _run_configured(command: str, data: Path) -> subprocess.CompletedProcess:
    """PITR_STOP_COMMAND or PITR_START_COMMAND, split like a shell would but run without
    one, `{data}` in any word replaced by the data directory."""
    argv = [word.replace("{data}", str(data)) for word in shlex.split(command)]
    return subprocess.run(  # noqa: S603 - the operator's own configured command, no shell
        argv, capture_output=True, text=True, timeout=3600
    )


def _archive_on_again(data_dir: Path) -> None:
    """Drop the `archive_mode = 'off'` the restore wrote into postgresql.auto.conf: the
    cluster going live archives again, into a new timeline of the same stanza."""
    auto = data_dir / "postgresql.auto.conf"
    if auto.exists():
        kept_lines = [
            line
            for line in auto.read_text().splitlines()
            if not line.replace(" ", "").startswith("archive_mode=")
        ]
        auto.write_text("\n".join(kept_lines) + "\n")
        _chown(auto)


def recovery_switch(
    cluster: RestoredCluster, *, actor: Actor = None, say: Callable[[str], None] = print
) -> Path:
    """Make the restored cluster the live one: stop it and the live cluster, move the live
    data directory aside (returned; delete it once satisfied), move the restored one into
    PITR_PG_DATA with archiving on again, and start it. Its WAL goes on in a new timeline of
    the same stanza, so the next restore can go back to any moment on either side."""
    live = Path(settings.PITR_PG_DATA)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    kept = live.with_name(f"{live.name}.before-restore-{stamp}")
    recovery_stop(cluster)
    say("stopping the live cluster")
    if settings.PITR_STOP_COMMAND:
        done = _run_configured(settings.PITR_STOP_COMMAND, live)
    else:
        done = _pg_ctl(live, "-m", "fast", "-w", "stop", timeout=600)
    if done.returncode and "Is server running?" not in done.stderr:
        raise RecoveryRefused(f"Could not stop the live cluster: {done.stderr.strip()}")
    if live.exists():
        os.replace(live, kept)
    shutil.move(str(cluster.data_dir), str(live))
    _archive_on_again(live)
    say("starting the restored cluster as the live one")
    if settings.PITR_START_COMMAND:
        done = _run_configured(settings.PITR_START_COMMAND, live)
    else:
        done = _pg_ctl(live, "-l", str(live.parent / f"{live.name}.log"), "-w", "start")
    if done.returncode:
        raise RecoveryRefused(
            f"The restored cluster did not start as the live one: {done.stderr.strip()}. "
            f"The previous data directory is intact at {kept}."
        )
    shutil.rmtree(cluster.socket_dir, ignore_errors=True)
    # The connections this process held went down with the old cluster.
    connections.close_all()
    audit_record(
        actor=actor,
        action="restore_switch",
        target=None,
        changes={"target": str(cluster.target), "kept": str(kept), "backup": cluster.backup_label},
    )
    return kept


# --- a new server from nothing but the repository and the keys -------------------------------
def recovery_new_server(
    *,
    target: RecoveryTarget,
    say: Callable[[str], None] = lambda message: None,
    progress: Callable[[float], None] | None = None,
    wait_seconds: float = 3600,
) -> RestoredCluster:
    """Disaster recovery onto a server with no database: restore the repository's backup
    for `target` straight into PITR_PG_DATA (which must be missing or empty), replay the WAL
    and start the cluster on a private port and socket, checked. Nothing serves the
    platform yet: `recovery_new_server_open` checks the operator against the restored
    accounts, then `recovery_new_server_go_live` starts it as the live database."""
    pitr_require()
    if target.kind == "name":
        raise RecoveryRefused(
            "A new server has no record of restore points: give --to-time (or latest)."
        )
    data_dir = Path(settings.PITR_PG_DATA)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RecoveryRefused(
            f"{data_dir} (PITR_PG_DATA) is not empty: this is for a server with no database. "
            "To go back in time on a running server use restore_backup --to-time."
        )
    pgbackrest.write_config()
    sets = pgbackrest.backup_sets()
    if target.kind == "time" and target.moment and target.moment > timezone.now():
        raise RecoveryRefused(f"{target} is in the future (it is now {timezone.now()}).")
    chosen = _choose_set(target, sets)
    started = timezone.now()
    clock = time.monotonic()
    # No TCP clients while the operator is not checked: a private socket only.
    cluster = _restore_and_start(
        target=target,
        chosen=chosen,
        data_dir=data_dir,
        port=_free_port(),
        listen="",
        started=started,
        say=say,
        progress=progress,
        wait_seconds=wait_seconds,
    )
    cluster.seconds = round(time.monotonic() - clock, 1)
    return cluster


def recovery_new_server_open(cluster: RestoredCluster) -> None:
    """Point this process's database connections at the restored cluster (its private
    socket, as the cluster's superuser), so that the operator is checked against the
    accounts it holds and the audit trail is written into it."""
    for alias in ("default", settings.MONITORING_DB_ALIAS):
        if alias not in connections:
            continue
        connections[alias].close()
        close_pool = getattr(connections[alias], "close_pool", None)
        if close_pool is not None:
            close_pool()  # a pool keeps the old address otherwise
        connections[alias].settings_dict.update(
            HOST=str(cluster.socket_dir),
            PORT=str(cluster.port),
            USER=settings.PITR_PG_USER,
            PASSWORD="",
        )
    settings.DATABASE_MAINTENANCE = {
        **settings.DATABASE_MAINTENANCE,
        "HOST": str(cluster.socket_dir),
        "PORT": str(cluster.port),
        "USER": settings.PITR_PG_USER,
        "PASSWORD": "",
    }


def recovery_new_server_abandon(cluster: RestoredCluster) -> None:
    """The operator was refused: stop the cluster and leave the server as it was (empty)."""
    connections.close_all()
    recovery_stop(cluster)
    for child in cluster.data_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    shutil.rmtree(cluster.socket_dir, ignore_errors=True)


def recovery_new_server_go_live(
    cluster: RestoredCluster, *, actor: Actor = None, say: Callable[[str], None] = print
) -> None:
    """Stop the private instance, turn archiving back on (a new timeline of the same
    stanza) and start it as the live database with its own configuration."""
    audit_record(
        actor=actor,
        action="restore_new_server",
        target=None,
        changes={
            "target": str(cluster.target),
            "backup": cluster.backup_label,
            "recovered_to": cluster.recovered_to.isoformat() if cluster.recovered_to else None,
            "data_dir": str(cluster.data_dir),
        },
    )
    connections.close_all()
    recovery_stop(cluster)
    _archive_on_again(cluster.data_dir)
    say("starting it as the live database")
    if settings.PITR_START_COMMAND:
        done = _run_configured(settings.PITR_START_COMMAND, cluster.data_dir)
    else:
        log = cluster.data_dir.parent / f"{cluster.data_dir.name}.log"
        done = _pg_ctl(cluster.data_dir, "-l", str(log), "-w", "start")
    if done.returncode:
        raise RecoveryRefused(f"The restored cluster did not start: {done.stderr.strip()}")
    shutil.rmtree(cluster.socket_dir, ignore_errors=True)
