"""Prometheus metrics, with prometheus-client.

Chosen over django-prometheus: that package times the database by swapping the DATABASES
ENGINE for its own backend (we already time every statement with our execute wrapper, and the
engine is shared with the pool set-up), labels by view name in ways we do not control, and
pulls in metrics we would not look at. Four metrics of our own, labelled by the resolved URL
name, are clearer and cost less.

Gunicorn runs several worker processes, each with its own counters. When the environment
variable PROMETHEUS_MULTIPROC_DIR names a directory (the same for every worker, emptied before
gunicorn starts), prometheus-client keeps the values in memory-mapped files there and
`/metrics` adds up every process's files (multiprocess mode); without it, `/metrics` shows the
figures of the one process that answered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "schoolhouse_http_request_duration_seconds",
    "Time from the request reaching Django to the response leaving it, per route.",
    ["route", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RESPONSES = Counter(
    "schoolhouse_http_responses",
    "Responses by route, method and status code.",
    ["route", "method", "status"],
)
REQUEST_QUERIES = Histogram(
    "schoolhouse_http_request_db_queries",
    "Database statements run while serving one request.",
    ["route"],
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 250, 500),
)
SLOW_QUERIES = Counter(
    "schoolhouse_db_slow_queries",
    "Statements slower than MONITORING_SLOW_QUERY_MS, by route (before sampling).",
    ["route"],
)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(*, route: str, method: str, status: int, seconds: float, queries: int) -> None:
    method = method if method in KNOWN_METHODS else "other"  # bounded label values
    REQUEST_LATENCY.labels(route=route, method=method).observe(seconds)
    RESPONSES.labels(route=route, method=method, status=str(status)).inc()
    REQUEST_QUERIES.labels(route=route).observe(queries)


class RedisCacheCollector:
    """Cache hit ratio and Redis memory, read from Redis `INFO` at scrape time.

    INFO's keyspace_hits/misses count every client of that Redis server (the broker too when
    it shares the server), since Redis started: the ratio is the server's, not only Django's."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("schoolhouse_redis_up", "1 when the cache's Redis answered INFO.")
        info = _redis_info()
        if info is None:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        hits = int(info.get("keyspace_hits", 0))
        misses = int(info.get("keyspace_misses", 0))
        yield CounterMetricFamily(
            "schoolhouse_redis_keyspace_hits", "Redis keyspace hits (INFO stats).", value=hits
        )
        yield CounterMetricFamily(
            "schoolhouse_redis_keyspace_misses", "Redis keyspace misses (INFO stats).", value=misses
        )
        if hits + misses:
            yield GaugeMetricFamily(
                "schoolhouse_cache_hit_ratio",
                "keyspace_hits / (keyspace_hits + keyspace_misses) of the cache's Redis.",
                value=hits / (hits + misses),
            )
        if "used_memory" in info:
            yield GaugeMetricFamily(
                "schoolhouse_redis_used_memory_bytes",
                "Memory used by the cache's Redis (INFO memory).",
                value=int(info["used_memory"]),
            )


def _redis_info() -> dict[str, Any] | None:
    """INFO of the cache's Redis, or None when the cache is not Redis or does not answer."""
    from django.conf import settings

    if settings.CACHES["default"]["BACKEND"] != "django_redis.cache.RedisCache":
        return None
    try:
        from django_redis import get_redis_connection

        info: dict[str, Any] = get_redis_connection("default").info()
    except Exception:
        logger.info("Redis INFO failed", exc_info=True)
        return None
    return info


class _Delegate:
    """Lets the default registry (single-process mode) be read through a scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition() -> bytes:
    """The text exposition `/metrics` answers with."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(_Delegate(REGISTRY))  # type: ignore[arg-type]
    registry.register(RedisCacheCollector())  # type: ignore[arg-type]
    return generate_latest(registry)
