"""Monitoring writes: heartbeats, system samples, pruning, and alert state."""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from .checks import HealthReport, backups_contract, celery_queues, existing_parent, health_report
from .models import AlertState, Heartbeat, RequestMinute, SlowQuery, SystemSample
from .notifications import AlertMessage, notify

logger = logging.getLogger(__name__)


def heartbeat_record(*, name: str, hostname: str = "") -> Heartbeat:
    """Note that the periodic job `name` ran now (one UPSERT-like statement pair)."""
    now = timezone.now()
    updated = Heartbeat.objects.filter(name=name).update(
        last_seen=now, hostname=hostname, count=F("count") + 1
    )
    if not updated:
        Heartbeat.objects.get_or_create(
            name=name, defaults={"last_seen": now, "hostname": hostname, "count": 1}
        )
    return Heartbeat.objects.get(name=name)


# --- system samples --------------------------------------------------------------------------
def system_sample_take(*, cpu_interval: float | None = None) -> SystemSample:
    """Measure the host and its services and keep one SystemSample row.

    CPU is measured over `cpu_interval` seconds (MONITORING_CPU_SAMPLE_SECONDS): a worker
    process's first non-blocking reading is meaningless. The disk figure is the fullest of
    MONITORING_DISK_PATHS. Every service figure is optional: one that does not answer leaves
    its column empty instead of losing the sample."""
    interval = settings.MONITORING_CPU_SAMPLE_SECONDS if cpu_interval is None else cpu_interval
    cpu = psutil.cpu_percent(interval=interval)
    disks = [
        (str(path), psutil.disk_usage(str(existing_parent(Path(path)))))
        for path in dict.fromkeys(settings.MONITORING_DISK_PATHS)
    ]
    disk_path, disk = max(disks, key=lambda d: d[1].percent)
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    from .selectors import latest_backup_size_get

    sample = SystemSample(
        taken_at=timezone.now(),
        hostname=socket.gethostname()[:200],
        cpu_percent=cpu,
        load_1m=load,
        memory_percent=psutil.virtual_memory().percent,
        disk_path=disk_path[:500],
        disk_percent=disk.percent,
        disk_used_bytes=disk.used,
        disk_total_bytes=disk.total,
        db_size_bytes=_optional(database_size_bytes),
        redis_used_memory_bytes=_optional(redis_used_memory_bytes),
        queue_lengths=_optional(broker_queue_lengths) or {},
        backup_size_bytes=_optional(latest_backup_size_get),
    )
    sample.full_clean()
    sample.save()
    return sample


def _optional(read: Any) -> Any:
    try:
        return read()
    except Exception:
        logger.warning("System sample: %s failed", read.__name__, exc_info=True)
        return None


def database_size_bytes() -> int | None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])
    if connection.vendor == "sqlite":
        name = Path(str(connection.settings_dict["NAME"]))
        return sum(p.stat().st_size for p in (name, Path(f"{name}-wal")) if p.exists())
    return None


def redis_used_memory_bytes() -> int | None:
    from .metrics import _redis_info

    info = _redis_info()
    return int(str(info["used_memory"])) if info and "used_memory" in info else None


# kombu's Redis transport keeps a queue as a list named after it, plus one list per priority
# step above 0 ("<queue>\x06\x16<priority>", default steps 0, 3, 6, 9).
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def broker_queue_lengths() -> dict[str, int]:
    """Messages waiting in each Celery queue of a Redis broker ({} for other brokers)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return {}
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        queues = celery_queues()
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}")
        lengths = pipe.execute()
    finally:
        client.close()
    per_queue = 1 + len(_PRIORITY_STEPS)
    return {
        queue: int(sum(lengths[i * per_queue : (i + 1) * per_queue]))
        for i, queue in enumerate(queues)
    }


# --- pruning ---------------------------------------------------------------------------------
def monitoring_prune(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Delete monitoring rows past their retention, and the oldest slow queries beyond
    MONITORING_SLOW_QUERY_MAX_ROWS: the tables stay bounded whatever the traffic."""
    now = now or timezone.now()
    days = datetime.timedelta(days=1)
    deleted = {
        "slow_queries": SlowQuery.objects.filter(
            recorded_at__lt=now - days * settings.MONITORING_SLOW_QUERY_RETENTION_DAYS
        ).delete()[0],
        "request_minutes": RequestMinute.objects.filter(
            minute__lt=now - days * settings.MONITORING_REQUEST_RETENTION_DAYS
        ).delete()[0],
        "system_samples": SystemSample.objects.filter(
            taken_at__lt=now - days * settings.MONITORING_SAMPLE_RETENTION_DAYS
        ).delete()[0],
    }
    keep = settings.MONITORING_SLOW_QUERY_MAX_ROWS
    oldest_kept = SlowQuery.objects.order_by("-id").values_list("id", flat=True)[keep : keep + 1]
    if oldest_kept:  # ids grow with insertion: everything at or below the first extra goes
        deleted["slow_queries"] += SlowQuery.objects.filter(id__lte=oldest_kept[0]).delete()[0]
    return deleted


# --- alerts ----------------------------------------------------------------------------------
Transition = Literal["opened", "resolved"]


@dataclass(frozen=True)
class AlertCondition:
    """One rule's verdict. `failing=None`: cannot tell now (its data source is down); the
    incident is left as it is rather than opened or resolved on no evidence."""

    name: str
    failing: bool | None
    summary: str


def alert_conditions_get(*, report: HealthReport) -> list[AlertCondition]:
    """Evaluate every alert rule against a health report and the figures it needs."""
    database = report.outcome("database")
    database_down = database is not None and database.state == "failed"
    conditions = [
        AlertCondition(
            "database_unreachable",
            database_down,
            database.message if database and database_down else "",
        ),
        _disk_condition(),
        _check_condition(report, "worker_missing", "celery"),
    ]
    if database_down:  # these read the database: no verdict until it is back
        conditions += [
            AlertCondition(name, None, "")
            for name in (
                "beat_stopped",
                "error_rate",
                "backup_failed",
                "pitr_archiving",
                "pitr_drill_failed",
            )
        ]
        return conditions
    conditions += [
        _check_condition(report, "beat_stopped", "celery_beat"),
        _error_rate_condition(),
        _backup_condition(),
        _check_condition(report, "pitr_archiving", "pitr"),
        # A drill that fails alerts at once (backups); this one also fires when drills stop.
        _check_condition(report, "pitr_drill_failed", "pitr_drill"),
    ]
    return conditions


def _check_condition(report: HealthReport, name: str, check: str) -> AlertCondition:
    outcome = report.outcome(check)
    if outcome is None:
        return AlertCondition(name, None, "")
    return AlertCondition(name, outcome.state == "failed", outcome.message)


def _disk_condition() -> AlertCondition:
    limit = settings.MONITORING_ALERT_DISK_PERCENT
    full = []
    for path in dict.fromkeys(settings.MONITORING_DISK_PATHS):
        usage = psutil.disk_usage(str(existing_parent(Path(path))))
        if usage.percent > limit:
            full.append(f"{path}: {usage.percent:.1f} % used (limit {limit:g} %)")
    return AlertCondition("disk_full", bool(full), "\n".join(full))


def _error_rate_condition() -> AlertCondition:
    from .selectors import error_rate_get

    minutes = settings.MONITORING_ALERT_ERROR_RATE_WINDOW_MINUTES
    requests, errors = error_rate_get(minutes=minutes)
    if requests < settings.MONITORING_ALERT_ERROR_RATE_MIN_REQUESTS:
        return AlertCondition("error_rate", False, "")
    rate = 100.0 * errors / requests
    failing = rate >= settings.MONITORING_ALERT_ERROR_RATE_PERCENT
    summary = f"{rate:.1f} % of {requests} requests answered 5xx in the last {minutes} min"
    return AlertCondition("error_rate", failing, summary)


def _backup_condition() -> AlertCondition:
    """`backups.selectors.last_backup_failed() -> bool`, when the backups app provides it."""
    last_failed = backups_contract("last_backup_failed")
    if last_failed is None:
        return AlertCondition("backup_failed", False, "")
    failed = bool(last_failed())
    return AlertCondition("backup_failed", failed, "the last backup run failed" if failed else "")


def alerts_evaluate(*, report: HealthReport | None = None) -> list[tuple[str, Transition]]:
    """Run the health checks (unless given), evaluate every rule and notify on each incident
    that opens or resolves. Returns the transitions."""
    report = report or health_report()
    database = report.outcome("database")
    database_up = database is None or database.state != "failed"
    transitions = []
    for condition in alert_conditions_get(report=report):
        if condition.failing is None:
            continue
        change = alert_state_update(
            name=condition.name,
            failing=condition.failing,
            summary=condition.summary,
            use_database=database_up,
        )
        if change:
            transitions.append((condition.name, change))
    return transitions


def alert_state_update(
    *, name: str, failing: bool, summary: str = "", use_database: bool = True
) -> Transition | None:
    """Record one rule's verdict and notify when an incident opens or resolves: one message
    per incident however many evaluations see it failing.

    The state lives in AlertState. When the database itself is unreachable (the very incident
    `database_unreachable` reports; the caller says so with `use_database=False`, sparing a
    wait on the pool) it lives in the cache instead, and is folded back into the table once
    the database answers; if the cache is down too, in this process's memory."""
    now = timezone.now()
    if not use_database:
        return _update_outside_database(name=name, failing=failing, summary=summary, now=now)
    try:
        return _update_in_database(name=name, failing=failing, summary=summary, now=now)
    except DatabaseError:
        logger.warning("Alert state for %s kept outside the database", name, exc_info=True)
        return _update_outside_database(name=name, failing=failing, summary=summary, now=now)


def _fallback_key(name: str) -> str:
    return f"monitoring:alert-open:{name}"


_memory_open: dict[str, dict[str, str]] = {}


@transaction.atomic
def _update_in_database(
    *, name: str, failing: bool, summary: str, now: datetime.datetime
) -> Transition | None:
    # The row lock serialises two evaluators (beat's job and a cron `monitor_system --alert`):
    # the second waits, then sees the incident already open and stays quiet. The message is
    # sent while the lock is held for that reason.
    state, _ = AlertState.objects.select_for_update().get_or_create(name=name)
    opened_outside = cache.get(_fallback_key(name)) or _memory_open.get(name)
    if opened_outside and not state.is_open:
        # Opened (and notified) while the database was down.
        state.is_open = True
        state.opened_at = datetime.datetime.fromisoformat(opened_outside["opened_at"])
        state.last_notified_at = state.opened_at
        state.summary = opened_outside.get("summary", "")
        state.resolved_at = None
        state.incidents += 1
    if opened_outside:
        cache.delete(_fallback_key(name))
        _memory_open.pop(name, None)
    state.last_checked_at = now
    if not failing:
        state.failing_since = None
    elif state.failing_since is None:
        state.failing_since = now
    grace = datetime.timedelta(seconds=settings.MONITORING_ALERT_GRACE_SECONDS.get(name, 0))
    # Failing, but not yet for as long as this rule's grace period: no incident yet.
    pending = failing and now - (state.failing_since or now) < grace
    transition: Transition | None = None
    if failing and not state.is_open and not pending:
        state.is_open, state.opened_at, state.resolved_at = True, now, None
        state.summary = summary
        state.incidents += 1
        transition = "opened"
    elif failing:
        state.summary = summary or state.summary
    elif state.is_open:
        state.is_open, state.resolved_at = False, now
        transition = "resolved"
    if transition:
        notify(
            AlertMessage(
                name=name,
                state="firing" if transition == "opened" else "resolved",
                summary=state.summary,
                opened_at=state.opened_at,
                resolved_at=state.resolved_at,
            )
        )
        state.last_notified_at = now
    state.full_clean()
    state.save()
    return transition


def _update_outside_database(
    *, name: str, failing: bool, summary: str, now: datetime.datetime
) -> Transition | None:
    key = _fallback_key(name)
    opened = cache.get(key) or _memory_open.get(name)
    if failing and not opened:
        record = {"opened_at": now.isoformat(), "summary": summary}
        cache.set(key, record, timeout=None)
        if cache.get(key) is None:  # the cache is down as well
            _memory_open[name] = record
        notify(AlertMessage(name=name, state="firing", summary=summary, opened_at=now))
        return "opened"
    if not failing and opened:
        cache.delete(key)
        _memory_open.pop(name, None)
        notify(
            AlertMessage(
                name=name,
                state="resolved",
                summary=opened.get("summary", ""),
                opened_at=datetime.datetime.fromisoformat(opened["opened_at"]),
                resolved_at=now,
            )
        )
        return "resolved"
    return None
