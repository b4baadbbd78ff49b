"""Per-minute request figures for the performance page, kept cheap on the request path.

Each web process sums its requests in memory, per (minute, route): count, 4xx, 5xx, total
time, total queries and a latency histogram. That is a dictionary update under a lock, no
I/O. Every MONITORING_REQUEST_FLUSH_SECONDS (or MONITORING_REQUEST_FLUSH_REQUESTS requests)
the request that finds the buffer due writes it, after its response is ready, as one
`INSERT ... ON CONFLICT (minute, route) DO UPDATE SET n = n + excluded.n` per row through the
monitoring connection. The upsert adds the processes' figures together in the database, so
any number of gunicorn workers and nodes share one row per minute and route.

Why not Redis counters folded in by the minute job: one network round trip on every request,
and a Redis outage would cost every request a socket timeout. Why not a row per request: the
table would grow with traffic. The price of this choice: a quiet process keeps its last
figures until its next request, and a process that is killed loses at most one interval.
"""

from __future__ import annotations

import bisect
import datetime
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

from .context import bounded_lock_wait
from .models import LATENCY_BUCKET_FIELDS, LATENCY_BUCKETS_MS, RequestMinute

logger = logging.getLogger(__name__)

SUMMED_COLUMNS: tuple[str, ...] = (
    "requests",
    "client_errors",
    "server_errors",
    "duration_ms_sum",
    "queries_sum",
    *LATENCY_BUCKET_FIELDS,
)


def bucket_index(duration_ms: float) -> int:
    """Index of the histogram bucket (`le_*` column) a request of this duration falls in."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, duration_ms)


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) in milliseconds estimated from histogram bucket counts, by linear
    interpolation inside the bucket (as Prometheus' histogram_quantile does). A quantile that
    falls in the open last bucket reads as its lower bound. None when there are no requests."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(LATENCY_BUCKETS_MS):
                return float(LATENCY_BUCKETS_MS[-1])
            lower = float(LATENCY_BUCKETS_MS[index - 1]) if index else 0.0
            upper = float(LATENCY_BUCKETS_MS[index])
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


@dataclass
class _Cell:
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    duration_ms_sum: float = 0.0
    queries_sum: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKET_FIELDS))

    def row(self) -> list[float | int]:
        return [
            self.requests,
            self.client_errors,
            self.server_errors,
            self.duration_ms_sum,
            self.queries_sum,
            *self.buckets,
        ]


class RequestStatsBuffer:
    """This process's figures not yet written. Thread-safe: gunicorn's gthread workers serve
    several requests at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[tuple[int, str], _Cell] = {}
        self._pending = 0
        self._last_flush = time.monotonic()

    def add(
        self,
        *,
        route: str,
        status: int,
        duration_ms: float,
        queries: int,
        at: float | None = None,
    ) -> None:
        minute = int((time.time() if at is None else at) // 60)
        with self._lock:
            cell = self._cells.get((minute, route))
            if cell is None:
                cell = self._cells[(minute, route)] = _Cell()
            cell.requests += 1
            if 400 <= status < 500:
                cell.client_errors += 1
            elif status >= 500:
                cell.server_errors += 1
            cell.duration_ms_sum += duration_ms
            cell.queries_sum += queries
            cell.buckets[bucket_index(duration_ms)] += 1
            self._pending += 1

    def take_if_due(self) -> dict[tuple[int, str], _Cell] | None:
        """The figures to write, if an interval or enough requests have passed; one caller
        gets them, the others None, so two threads never write the same figures."""
        now = time.monotonic()
        with self._lock:
            if not self._cells:
                return None
            due = (
                now - self._last_flush >= settings.MONITORING_REQUEST_FLUSH_SECONDS
                or self._pending >= settings.MONITORING_REQUEST_FLUSH_REQUESTS
            )
            if not due:
                return None
            return self._take(now)

    def take(self) -> dict[tuple[int, str], _Cell]:
        with self._lock:
            return self._take(time.monotonic())

    def _take(self, now: float) -> dict[tuple[int, str], _Cell]:
        cells, self._cells = self._cells, {}
        self._pending = 0
        self._last_flush = now
        return cells

    def clear(self) -> None:
        self.take()


BUFFER = RequestStatsBuffer()


def _upsert_sql(alias: str) -> str:
    qn = connections[alias].ops.quote_name
    table = qn(RequestMinute._meta.db_table)
    columns = ["minute", "route", *SUMMED_COLUMNS]
    sets = ", ".join(f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in SUMMED_COLUMNS)
    # Identifiers come from the model's own metadata; every value is a parameter.
    return (
        f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({qn('minute')}, {qn('route')}) DO UPDATE SET {sets}"
    )


def cells_write(cells: dict[tuple[int, str], _Cell]) -> int:
    """Add the figures to the RequestMinute rows (creating them as needed); returns the number
    of rows touched. Never raises: losing figures must not fail the request that flushes."""
    if not cells:
        return 0
    alias = settings.MONITORING_DB_ALIAS
    connection = connections[alias]
    if connection.settings_dict["NAME"] != connections["default"].settings_dict["NAME"]:
        return 0  # the test database is being created; see slow_queries.records_write
    rows = []
    for (minute, route), cell in sorted(cells.items()):
        at = datetime.datetime.fromtimestamp(minute * 60, tz=datetime.UTC)
        rows.append([connection.ops.adapt_datetimefield_value(at), route[:200], *cell.row()])
    try:
        with bounded_lock_wait(alias), connection.cursor() as cursor:
            cursor.executemany(_upsert_sql(alias), rows)
    except Exception:
        # Info, not warning: see slow_queries.records_write.
        logger.info("Could not write request figures for %d routes", len(rows), exc_info=True)
        return 0
    return len(rows)


def flush_if_due() -> int:
    """Write this process's figures if they are due (called after each response)."""
    cells = BUFFER.take_if_due()
    return cells_write(cells) if cells else 0


def flush() -> int:
    """Write this process's figures now."""
    return cells_write(BUFFER.take())
