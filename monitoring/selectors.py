"""Monitoring reads: the performance page's series and the slow-query summary."""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Max, Min, QuerySet, Sum
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from .models import LATENCY_BUCKET_FIELDS, RequestMinute, SlowQuery, SystemSample
from .request_stats import SUMMED_COLUMNS, quantile

logger = logging.getLogger(__name__)

# Window (hours) -> width of one point (minutes). Beyond 6 h the bins get wider so a line has
# at most a few hundred points.
WINDOWS: dict[int, int] = {1: 1, 6: 5, 24: 15, 168: 60}
DEFAULT_WINDOW = 6


@dataclass(frozen=True)
class Window:
    hours: int
    bin_minutes: int
    start: datetime.datetime
    end: datetime.datetime

    @property
    def bins(self) -> list[datetime.datetime]:
        step = datetime.timedelta(minutes=self.bin_minutes)
        out, moment = [], self.start
        while moment < self.end:
            out.append(moment)
            moment += step
        return out

    def bin_of(self, moment: datetime.datetime) -> datetime.datetime:
        offset = (moment - self.start) // datetime.timedelta(minutes=self.bin_minutes)
        return self.start + datetime.timedelta(minutes=self.bin_minutes) * offset


def window_get(*, hours: int | None, now: datetime.datetime | None = None) -> Window:
    """The `hours` ending with the current bin; unknown sizes fall back to the default. Bins
    are aligned to their width, so a point covers the same minutes from one reload to the
    next."""
    hours = hours if hours in WINDOWS else DEFAULT_WINDOW
    bin_minutes = WINDOWS[hours]
    now = now or timezone.now()
    end_minute = (int(now.timestamp() // 60) // bin_minutes + 1) * bin_minutes
    end = datetime.datetime.fromtimestamp(end_minute * 60, tz=datetime.UTC)
    return Window(
        hours=hours,
        bin_minutes=bin_minutes,
        start=end - datetime.timedelta(hours=hours),
        end=end,
    )


# --- requests --------------------------------------------------------------------------------
@dataclass
class RouteFigures:
    route: str
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    duration_ms_sum: float = 0.0
    queries_sum: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKET_FIELDS))

    def add(self, row: Mapping[str, Any]) -> None:
        self.requests += row["requests"] or 0
        self.client_errors += row["client_errors"] or 0
        self.server_errors += row["server_errors"] or 0
        self.duration_ms_sum += row["duration_ms_sum"] or 0.0
        self.queries_sum += row["queries_sum"] or 0
        for i, name in enumerate(LATENCY_BUCKET_FIELDS):
            self.buckets[i] += row[name] or 0

    @property
    def p50(self) -> float | None:
        return quantile(self.buckets, 0.50)

    @property
    def p95(self) -> float | None:
        return quantile(self.buckets, 0.95)

    @property
    def mean_ms(self) -> float | None:
        return self.duration_ms_sum / self.requests if self.requests else None

    @property
    def queries_per_request(self) -> float | None:
        return self.queries_sum / self.requests if self.requests else None

    @property
    def error_rate(self) -> float | None:
        return 100.0 * self.server_errors / self.requests if self.requests else None


def _sums() -> dict[str, Sum]:
    return {name: Sum(name) for name in SUMMED_COLUMNS}


@dataclass(frozen=True)
class RequestSeries:
    routes: list[RouteFigures]  # the busiest first, whole window
    total: RouteFigures
    per_bin: dict[datetime.datetime, RouteFigures]  # every route together
    per_route_bin: dict[str, dict[datetime.datetime, RouteFigures]]  # the top routes only


def request_series_get(*, window: Window, top: int = 5, table_rows: int = 25) -> RequestSeries:
    """Request figures of the window: per route, per time bin, and per bin of the busiest
    `top` routes. Summed in the database; for the week window down to hours already."""
    rows = RequestMinute.objects.filter(minute__gte=window.start, minute__lt=window.end)
    by_route = rows.values("route").annotate(**_sums()).order_by("-requests", "route")
    routes = []
    total = RouteFigures(route="all")
    for row in by_route:
        figures = RouteFigures(route=row["route"])
        figures.add(row)
        total.add(row)
        routes.append(figures)
    top_names = [r.route for r in routes[:top]]

    truncate = TruncHour if window.bin_minutes >= 60 else TruncMinute
    per_bin: dict[datetime.datetime, RouteFigures] = {}
    for row in cast(Any, rows.annotate(t=truncate("minute")).values("t").annotate(**_sums())):
        moment = window.bin_of(row["t"])
        per_bin.setdefault(moment, RouteFigures(route="all")).add(row)
    per_route_bin: dict[str, dict[datetime.datetime, RouteFigures]] = defaultdict(dict)
    for row in (
        rows.filter(route__in=top_names)
        .annotate(t=truncate("minute"))
        .values("t", "route")
        .annotate(**_sums())
    ):
        moment = window.bin_of(row["t"])
        per_route_bin[row["route"]].setdefault(moment, RouteFigures(route=row["route"])).add(row)
    return RequestSeries(
        routes=routes[:table_rows],
        total=total,
        per_bin=per_bin,
        per_route_bin={name: per_route_bin.get(name, {}) for name in top_names},
    )


def error_rate_get(*, minutes: int, now: datetime.datetime | None = None) -> tuple[int, int]:
    """(requests, 5xx responses) of the last `minutes` whole minutes, every route together."""
    now = now or timezone.now()
    since = now.replace(second=0, microsecond=0) - datetime.timedelta(minutes=minutes)
    sums = RequestMinute.objects.filter(minute__gte=since).aggregate(
        requests=Sum("requests"), errors=Sum("server_errors")
    )
    return sums["requests"] or 0, sums["errors"] or 0


# --- slow queries ----------------------------------------------------------------------------
def slow_query_counts_get(*, window: Window) -> dict[datetime.datetime, int]:
    """Slow queries recorded per time bin."""
    truncate = TruncHour if window.bin_minutes >= 60 else TruncMinute
    counts: dict[datetime.datetime, int] = defaultdict(int)
    for row in (
        SlowQuery.objects.filter(recorded_at__gte=window.start, recorded_at__lt=window.end)
        .annotate(t=truncate("recorded_at"))
        .values("t")
        .annotate(n=Count("id"))
    ):
        counts[window.bin_of(row["t"])] += row["n"]
    return dict(counts)


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(q) WITHIN GROUP (ORDER BY x): exact, interpolated."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        # A number we chose, never user input: safe to put in the SQL text.
        super().__init__(expression, fraction=f"{float(fraction):.4f}", **extra)


def percentile(values: list[float], fraction: float) -> float | None:
    """percentile_cont in Python, for databases without it (SQLite)."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class FingerprintSummary:
    fingerprint: str
    statement: str
    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float
    first_seen: datetime.datetime
    last_seen: datetime.datetime
    routes: list[str]


def slow_query_summary_get(
    *, since: datetime.datetime | None = None, limit: int = 50, order: str = "count"
) -> list[FingerprintSummary]:
    """Slow queries grouped by fingerprint: count, p50, p95 and max duration, busiest (or
    slowest, with order="max", or costliest in total, order="total") first."""
    qs: QuerySet[SlowQuery] = SlowQuery.objects.all()
    if since is not None:
        qs = qs.filter(recorded_at__gte=since)
    aggregates: dict[str, Any] = {
        "count": Count("id"),
        "max_ms": Max("duration_ms"),
        "total_ms": Sum("duration_ms"),
        "first_seen": Min("recorded_at"),
        "last_seen": Max("recorded_at"),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates["p50_ms"] = PercentileCont("duration_ms", 0.5)
        aggregates["p95_ms"] = PercentileCont("duration_ms", 0.95)
    ordering = {"count": "-count", "max": "-max_ms", "total": "-total_ms"}.get(order, "-count")
    groups: list[dict[str, Any]] = cast(
        Any,
        list(
            qs.values("fingerprint")
            .annotate(**aggregates)
            .order_by(ordering, "fingerprint")[:limit]
        ),
    )
    prints = [g["fingerprint"] for g in groups]
    statements: dict[str, str] = {}
    routes: dict[str, set[str]] = defaultdict(set)
    durations: dict[str, list[float]] = defaultdict(list)
    sample_rows = qs.filter(fingerprint__in=prints).values_list(
        "fingerprint", "statement", "route", "duration_ms"
    )
    if postgres:  # only the statement and the routes are needed: one row per pair
        sample_rows = sample_rows.order_by().distinct("fingerprint", "route")
    for fp, statement, route, duration in sample_rows:
        statements.setdefault(fp, statement)
        if route:
            routes[fp].add(route)
        if not postgres:
            durations[fp].append(duration)
    return [
        FingerprintSummary(
            fingerprint=g["fingerprint"],
            statement=statements.get(g["fingerprint"], ""),
            count=g["count"],
            p50_ms=g["p50_ms"] if postgres else percentile(durations[g["fingerprint"]], 0.5),
            p95_ms=g["p95_ms"] if postgres else percentile(durations[g["fingerprint"]], 0.95),
            max_ms=g["max_ms"],
            first_seen=g["first_seen"],
            last_seen=g["last_seen"],
            routes=sorted(routes[g["fingerprint"]])[:5],
        )
        for g in groups
    ]


# --- host and backups ------------------------------------------------------------------------
@dataclass(frozen=True)
class HostPoint:
    moment: datetime.datetime
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    disk_used_bytes: int
    db_size_bytes: int | None


def host_series_get(*, window: Window) -> list[HostPoint]:
    """System samples averaged per time bin (the last value for sizes)."""
    bins: dict[datetime.datetime, list[SystemSample]] = defaultdict(list)
    for sample in SystemSample.objects.filter(
        taken_at__gte=window.start, taken_at__lt=window.end
    ).order_by("taken_at"):
        bins[window.bin_of(sample.taken_at)].append(sample)
    points = []
    for moment in sorted(bins):
        samples = bins[moment]
        n = len(samples)
        points.append(
            HostPoint(
                moment=moment,
                cpu_percent=sum(s.cpu_percent for s in samples) / n,
                memory_percent=sum(s.memory_percent for s in samples) / n,
                disk_percent=sum(s.disk_percent for s in samples) / n,
                disk_used_bytes=samples[-1].disk_used_bytes,
                db_size_bytes=samples[-1].db_size_bytes,
            )
        )
    return points


@dataclass(frozen=True)
class BackupPoint:
    started_at: datetime.datetime
    size_bytes: int | None
    duration_seconds: float | None
    status: str


def backup_runs_get(*, since: datetime.datetime) -> list[BackupPoint]:
    """Database backup runs since `since`, oldest first, read from the backups app:

        backups.selectors.backup_run_history(*, since: datetime) -> Iterable[Mapping | object]

    with `started_at`, `size_bytes`, `duration_seconds` and `status`; or, while it has not
    that function, its `backup_runs_list(kind="database", limit=...)` (BackupRun rows:
    `stored_size`, the `duration` timedelta). Empty until the backups app has either, and
    empty (logged) should it answer something unexpected: a chart must not break the page."""
    # Imported here: monitoring.checks loads django-health-check (about 9 MiB), and this
    # module is imported by the admin in every process, backups and restores included.
    from .checks import backups_contract

    try:
        history = backups_contract("backup_run_history")
        if history is not None:
            runs = list(history(since=since))
        else:
            listing = backups_contract("backup_runs_list")
            runs = list(listing(kind="database", limit=500)) if listing else []
        points = [_backup_point(run) for run in runs]
    except Exception:
        logger.warning("Backup history unavailable", exc_info=True)
        return []
    return sorted(
        (p for p in points if p is not None and p.started_at >= since),
        key=lambda p: p.started_at,
    )


def _backup_point(run: object) -> BackupPoint | None:
    def read(*keys: str) -> Any:
        for key in keys:
            value = run.get(key) if isinstance(run, Mapping) else getattr(run, key, None)
            if value is not None:
                return value
        return None

    started = read("started_at")
    if not isinstance(started, datetime.datetime):
        return None
    duration = read("duration_seconds", "duration")
    if isinstance(duration, datetime.timedelta):
        duration = duration.total_seconds()
    size = read("size_bytes", "stored_size")
    return BackupPoint(
        started_at=started,
        size_bytes=int(size) if size is not None else None,
        duration_seconds=float(duration) if duration is not None else None,
        status=str(read("status") or ""),
    )


def latest_backup_size_get() -> int | None:
    """Size of the most recent backup run of the last week that reported one."""
    since = timezone.now() - datetime.timedelta(days=7)
    sizes = [p.size_bytes for p in backup_runs_get(since=since) if p.size_bytes is not None]
    return sizes[-1] if sizes else None
