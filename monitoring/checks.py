"""Health checks, on django-health-check 4.x (`health_check.HealthCheck` dataclasses whose
`run()` raises `ServiceWarning` for a degraded state and `ServiceUnavailable` for a failure).

The library's own checks are used where they fit (database, cache, storage, Celery ping,
memory); ours cover Celery beat, migrations, backups, disk paths and the connection pool.
`configured_checks()` is the one list the dashboard, the readiness probe, `monitor_system`
and the alerts all run, each check with a stable name and a critical flag
(MONITORING_CRITICAL_CHECKS): readiness fails only on critical checks.

Checks that touch the database run on the request's own thread (`sync_to_async` with
`thread_sensitive=True`) rather than in the executor's threads: a connection opened in a
throw-away thread would never go back to the pool.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import psutil
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from health_check import Cache, Database, HealthCheck, Storage
from health_check.base import HealthCheckResult
from health_check.contrib.celery import Ping
from health_check.contrib.psutil import Memory
from health_check.exceptions import ServiceUnavailable, ServiceWarning

# Names MONITORING_CRITICAL_CHECKS may use (settings.py validates against the same set).
CHECK_NAMES = frozenset(
    {
        "database",
        "migrations",
        "cache",
        "storage",
        "celery",
        "celery_beat",
        "disk",
        "memory",
        "backup",
        "db_pool",
        "row_security",
        "pitr",
    }
)
# Not among them: `pitr_drill`, on purpose: a weekly drill's result must never take a node out
# of service.

State = Literal["ok", "warning", "failed"]


class _OnRequestThread:
    """Mixin: run the check's synchronous part, `run_sync` (by default the library check's own
    `run`), on the calling request's (or command's) thread, where Django opens and closes its
    connections per request."""

    async def run(self) -> None:
        try:
            await sync_to_async(self.run_sync, thread_sensitive=True)()
        except DatabaseError as exc:
            # The library would report an unexpected exception as "unknown error".
            raise ServiceUnavailable(f"database unavailable ({type(exc).__name__})") from exc

    def run_sync(self) -> None:
        super().run()  # type: ignore[misc]


@dataclasses.dataclass
class DatabaseCheck(_OnRequestThread, Database):
    """SELECT 1 through the monitoring alias: no pool in the way, so a full pool or a down
    server answers within MONITORING_DB_CONNECT_TIMEOUT instead of the pool's wait."""


@dataclasses.dataclass
class StorageCheck(_OnRequestThread, Storage):
    """Write, read and delete a small file on one STORAGES alias."""


@dataclasses.dataclass
class CacheCheck(Cache):
    """Set and get a key. The Redis cache swallows its errors (a dead Redis is a cache miss for
    the site), so an unreachable Redis shows here as a value that does not come back."""

    async def run(self) -> None:
        try:
            await super().run()
        except ServiceUnavailable as exc:
            raise ServiceUnavailable("the cache did not return the value just written") from exc


@dataclasses.dataclass
class CeleryPing(Ping):
    """Workers answer a broadcast ping, and every queue the platform routes tasks to has one."""

    queues: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    def check_active_queues(self, *active_workers: str) -> None:
        active = {
            queue.get("name")
            for queues in (
                self.app.control.inspect(list(active_workers)).active_queues() or {}
            ).values()
            for queue in queues
        }
        missing = sorted(set(self.queues) - active)
        if missing:
            raise ServiceUnavailable(f"no worker consumes the queue(s) {', '.join(missing)}")


@dataclasses.dataclass
class CeleryBeatCheck(_OnRequestThread, HealthCheck):
    """Beat's `celery-beat` heartbeat (stamped every minute by a worker) is recent: proves beat
    schedules, the broker delivers and a worker runs."""

    max_age: datetime.timedelta = dataclasses.field(
        default=datetime.timedelta(seconds=180), repr=False
    )
    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run_sync(self) -> None:
        from .models import Heartbeat

        beat = Heartbeat.objects.filter(name="celery-beat").first()
        if beat is None:
            raise ServiceUnavailable("no heartbeat recorded yet: is Celery beat running?")
        age = timezone.now() - beat.last_seen
        self.detail = f"last heartbeat {age.total_seconds():.0f} s ago"
        if age > self.max_age:
            raise ServiceUnavailable(
                f"last heartbeat {age.total_seconds():.0f} s ago "
                f"(more than {self.max_age.total_seconds():.0f} s)"
            )


# A process's code does not change while it runs: once every migration is applied, the answer
# holds until a deploy (new process). It is still re-read now and then, in case someone rolls
# a migration back by hand.
_MIGRATIONS_OK_FOR = 300.0
_migrations_ok_at: float | None = None


def migrations_cache_clear() -> None:
    global _migrations_ok_at
    _migrations_ok_at = None


@dataclasses.dataclass
class MigrationsCheck(_OnRequestThread, HealthCheck):
    """Every migration of the code is applied: new code on an old schema fails on its first
    query of a new column, so a node in that state must not take traffic."""

    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run_sync(self) -> None:
        global _migrations_ok_at
        now = time.monotonic()
        if _migrations_ok_at is not None and now - _migrations_ok_at < _MIGRATIONS_OK_FOR:
            return
        try:
            executor = MigrationExecutor(connections["default"])
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            raise ServiceUnavailable("cannot read the migration history") from exc
        if plan:
            first = plan[0][0]
            raise ServiceUnavailable(
                f"{len(plan)} unapplied migration(s), first {first.app_label}.{first.name}"
            )
        _migrations_ok_at = now


@dataclasses.dataclass
class RowSecurityCheck(_OnRequestThread, HealthCheck):
    """The second wall between schools: every school-owned table has its row-level security
    policy, and the application's role is one the policies bind (students.row_security)."""

    def run_sync(self) -> None:
        from students.row_security import row_security_problems

        try:
            errors, warnings = row_security_problems()
        except DatabaseError as exc:
            raise ServiceUnavailable("cannot read the database's catalogue") from exc
        if errors:
            raise ServiceUnavailable("; ".join(errors))
        if warnings:
            raise ServiceWarning("; ".join(warnings))


@dataclasses.dataclass
class BackupCheck(_OnRequestThread, HealthCheck):
    """The last *verified* backup is recent enough.

    Reads `backups.selectors.last_verified_backup_at() -> datetime | None`, imported when the
    check runs (monitoring may read backups, never the reverse). Until the backups app
    provides it, or when it returns None, the check warns "no backup recorded": a warning, not
    a failure, because a fresh install has none yet."""

    max_age: datetime.timedelta = dataclasses.field(
        default=datetime.timedelta(hours=26), repr=False
    )
    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run_sync(self) -> None:
        last_verified = backups_contract("last_verified_backup_at")
        at = last_verified() if last_verified else None
        if at is None:
            raise ServiceWarning("no backup recorded")
        age = timezone.now() - at
        hours = age.total_seconds() / 3600
        self.detail = f"last verified backup {hours:.1f} h ago"
        if age > self.max_age:
            raise ServiceUnavailable(
                f"last verified backup {hours:.1f} h ago "
                f"(more than {self.max_age.total_seconds() / 3600:.0f} h)"
            )


@dataclasses.dataclass
class PitrCheck(_OnRequestThread, HealthCheck):
    """Continuous archiving for point-in-time recovery (when PITR_PG_DATA is set): reads
    `backups.selectors.pitr_health()` (errors, warnings, detail)."""

    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run_sync(self) -> None:
        health = backups_contract("pitr_health")
        if health is None:
            raise ServiceWarning("the backups app reports no archiving figures")
        try:
            report = health()
        except Exception as exc:
            raise ServiceUnavailable(f"cannot read the archiver: {exc}") from exc
        self.detail = report.detail
        if report.errors:
            raise ServiceUnavailable("; ".join(report.errors))
        if report.warnings:
            raise ServiceWarning("; ".join(report.warnings))


@dataclasses.dataclass
class PitrDrillCheck(_OnRequestThread, HealthCheck):
    """The weekly restore drill (when PITR_PG_DATA is set): its newest result and age, from
    `backups.selectors.pitr_drill_health()` (errors, warnings, detail)."""

    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run_sync(self) -> None:
        health = backups_contract("pitr_drill_health")
        if health is None:
            raise ServiceWarning("the backups app reports no restore drills")
        report = health()
        self.detail = report.detail
        if report.errors:
            raise ServiceUnavailable("; ".join(report.errors))
        if report.warnings:
            raise ServiceWarning("; ".join(report.warnings))


def backups_contract(name: str) -> Callable[..., Any] | None:
    """A public function of `backups.selectors`, or None while the backups app has none."""
    try:
        module = importlib.import_module("backups.selectors")
    except ModuleNotFoundError as exc:
        if exc.name in {"backups", "backups.selectors"}:
            return None
        raise  # backups.selectors exists but imports something missing: a real bug
    function = getattr(module, name, None)
    return function if callable(function) else None


@dataclasses.dataclass
class DiskCheck(HealthCheck):
    """Use of the file system holding `path` (the nearest existing parent when the folder is
    not created yet)."""

    path: str = "."
    warn_percent: float = dataclasses.field(default=80.0, repr=False)
    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run(self) -> None:
        usage = psutil.disk_usage(str(existing_parent(Path(self.path))))
        self.detail = f"{usage.percent:.1f} % used, {usage.free / 1024**3:.1f} GiB free"
        if usage.percent >= self.warn_percent:
            raise ServiceWarning(f"{usage.percent:.1f} % used on {self.path}")


def existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclasses.dataclass
class MemoryCheck(Memory):
    """System memory use (the library check, plus the figure when all is well)."""

    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run(self) -> None:
        super().run()
        memory = psutil.virtual_memory()
        self.detail = f"{memory.percent:.1f} % used, {memory.available / 1024**3:.1f} GiB free"


@dataclasses.dataclass
class DatabasePoolCheck(_OnRequestThread, HealthCheck):
    """How full this process's psycopg connection pool is (Django's `connection.pool`).

    A pool is per process: the figure is for the web process that answered. Without a pool
    (DB_POOL=false) it reports the server's connections against max_connections instead."""

    warn_percent: float = dataclasses.field(default=80.0, repr=False)
    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run_sync(self) -> None:
        connection = connections["default"]
        pool = getattr(connection, "pool", None) if connection.vendor == "postgresql" else None
        if pool is not None:
            stats = pool.get_stats()
            size = stats.get("pool_size", 0)
            in_use = size - stats.get("pool_available", 0)
            maximum = stats.get("pool_max", 0) or 1
            waiting = stats.get("requests_waiting", 0)
            percent = 100.0 * in_use / maximum
            self.detail = f"{in_use} of {maximum} connections in use, {waiting} waiting"
            if waiting or in_use >= maximum:
                raise ServiceUnavailable(f"pool exhausted: {self.detail}")
            if percent >= self.warn_percent:
                raise ServiceWarning(f"pool {percent:.0f} % in use: {self.detail}")
            return
        if connection.vendor != "postgresql":
            self.detail = f"no pool ({connection.vendor})"
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
            )
            used, maximum = cursor.fetchone()
        percent = 100.0 * used / (maximum or 1)
        self.detail = f"no pool; server has {used} of {maximum} connections"
        if percent >= self.warn_percent:
            raise ServiceWarning(f"server connections {percent:.0f} % of max_connections")


# --- the registry ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Entry:
    name: str  # "database", "storage:default", "disk:/srv/media"
    kind: str  # the name MONITORING_CRITICAL_CHECKS uses ("storage", "disk")
    critical: bool
    check: HealthCheck


def configured_checks(*, critical_only: bool = False) -> list[Entry]:
    """Fresh check instances for every configured service, in dashboard order."""
    critical = set(settings.MONITORING_CRITICAL_CHECKS)
    entries: list[Entry] = []

    def add(name: str, kind: str, check: HealthCheck) -> None:
        entries.append(Entry(name=name, kind=kind, critical=kind in critical, check=check))

    add("database", "database", DatabaseCheck(alias=settings.MONITORING_DB_ALIAS))
    add("migrations", "migrations", MigrationsCheck())
    add("row_security", "row_security", RowSecurityCheck())
    add(
        "db_pool",
        "db_pool",
        DatabasePoolCheck(warn_percent=settings.MONITORING_DB_POOL_WARN_PERCENT),
    )
    add("cache", "cache", CacheCheck(alias="default"))
    for alias in settings.STORAGES:
        if alias not in settings.MONITORING_STORAGE_SKIP:
            add(f"storage:{alias}", "storage", StorageCheck(alias=alias))
    add(
        "celery",
        "celery",
        CeleryPing(
            timeout=datetime.timedelta(seconds=settings.MONITORING_CELERY_PING_TIMEOUT),
            queues=celery_queues(),
        ),
    )
    add(
        "celery_beat",
        "celery_beat",
        CeleryBeatCheck(
            max_age=datetime.timedelta(seconds=settings.MONITORING_BEAT_MAX_AGE_SECONDS)
        ),
    )
    add(
        "backup",
        "backup",
        BackupCheck(max_age=datetime.timedelta(hours=settings.MONITORING_BACKUP_MAX_AGE_HOURS)),
    )
    if settings.PITR_ENABLED:
        add("pitr", "pitr", PitrCheck())
        add("pitr_drill", "pitr_drill", PitrDrillCheck())
    for path in dict.fromkeys(settings.MONITORING_DISK_PATHS):
        add(
            f"disk:{path}",
            "disk",
            DiskCheck(path=path, warn_percent=settings.MONITORING_DISK_WARN_PERCENT),
        )
    add(
        "memory",
        "memory",
        MemoryCheck(max_memory_usage_percent=settings.MONITORING_MEMORY_WARN_PERCENT),
    )
    return [e for e in entries if e.critical] if critical_only else entries


def celery_queues() -> tuple[str, ...]:
    """The default queue and every queue CELERY_TASK_ROUTES sends tasks to."""
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in getattr(settings, "CELERY_TASK_ROUTES", {}).values():
        if isinstance(route, dict) and route.get("queue"):
            queues.add(route["queue"])
    return tuple(sorted(queues))


# --- results ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    kind: str
    critical: bool
    state: State
    message: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class HealthReport:
    checked_at: datetime.datetime
    hostname: str
    outcomes: list[Outcome]

    @property
    def status(self) -> Literal["ok", "warning", "critical"]:
        """critical: a critical check failed; warning: anything else is not OK."""
        if any(o.critical and o.state == "failed" for o in self.outcomes):
            return "critical"
        if any(o.state != "ok" for o in self.outcomes):
            return "warning"
        return "ok"

    @property
    def exit_code(self) -> int:
        """Nagios' convention, which cron wrappers and external monitors understand."""
        return {"ok": 0, "warning": 1, "critical": 2}[self.status]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "critical" else 200

    def outcome(self, name: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checked_at": self.checked_at.isoformat(),
            "hostname": self.hostname,
            "checks": [o.as_dict() for o in self.outcomes],
        }


def outcome_from(entry: Entry, result: HealthCheckResult) -> Outcome:
    error = result.error
    if error is None:
        state: State = "ok"
        message = getattr(entry.check, "detail", "") or "OK"
    else:
        state = "warning" if isinstance(error, ServiceWarning) else "failed"
        message = str(getattr(error, "message", error))
    return Outcome(
        name=entry.name,
        kind=entry.kind,
        critical=entry.critical,
        state=state,
        message=message,
        seconds=round(result.time_taken, 4),
    )


def report_from(entries: Iterable[Entry], results: Iterable[HealthCheckResult]) -> HealthReport:
    by_check = {id(e.check): e for e in entries}
    return HealthReport(
        checked_at=timezone.now(),
        hostname=socket.gethostname(),
        outcomes=[outcome_from(by_check[id(r.check)], r) for r in results],
    )


async def _gather(entries: list[Entry]) -> list[HealthCheckResult]:
    import asyncio

    return list(await asyncio.gather(*(e.check.get_result() for e in entries)))


def health_report(*, critical_only: bool = False) -> HealthReport:
    """Run the configured checks (concurrently, as the library's view does) from synchronous
    code: a command, a Celery task or the alert rules."""
    entries = configured_checks(critical_only=critical_only)
    results = async_to_sync(_gather)(entries)
    return report_from(entries, results)
