"""Monitoring state. Business data never lives here: no row names a student or a school."""

from __future__ import annotations

from django.db import models

# Upper bounds (milliseconds) of the request-latency histogram kept per route and minute. The
# last bucket is open-ended. Dense around 50-600 ms, where a page goes from fast to sluggish.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    10,
    25,
    50,
    75,
    100,
    150,
    250,
    400,
    600,
    1000,
    2500,
    5000,
    10000,
)
LATENCY_BUCKET_FIELDS: tuple[str, ...] = (
    *(f"le_{int(bound)}" for bound in LATENCY_BUCKETS_MS),
    "le_inf",
)


class Heartbeat(models.Model):
    """The last time a named periodic job ran; Celery beat's liveness is read from it."""

    name = models.CharField(max_length=100, unique=True)
    last_seen = models.DateTimeField()
    hostname = models.CharField(max_length=200, blank=True)
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"


class SlowQuery(models.Model):
    """One database statement that took longer than MONITORING_SLOW_QUERY_MS.

    Only the normalised statement is kept (literals and parameters stripped): parameters can
    hold student data, and the fingerprint groups the same query across values."""

    recorded_at = models.DateTimeField(db_index=True)
    fingerprint = models.CharField(max_length=16, db_index=True)
    statement = models.TextField()
    duration_ms = models.FloatField()
    route = models.CharField(max_length=200, blank=True)
    stack = models.TextField(blank=True)
    database = models.CharField(max_length=50, default="default")

    class Meta:
        verbose_name_plural = "slow queries"
        ordering = ["-recorded_at"]

    def __str__(self) -> str:
        return f"{self.duration_ms:.0f} ms {self.statement[:60]}"


class SlowQueryFingerprint(SlowQuery):
    """The admin's aggregated view of slow queries: one line per fingerprint."""

    class Meta:
        proxy = True
        verbose_name = "slow query summary"
        verbose_name_plural = "slow query summary"


class RequestMinute(models.Model):
    """Requests of one route in one minute, summed over every web process.

    Percentiles cannot be added up, so each row keeps a histogram (`le_*` columns, counts per
    latency bucket); p50/p95 of any set of rows is read from the summed buckets."""

    minute = models.DateTimeField()
    route = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    client_errors = models.PositiveIntegerField(default=0)  # 4xx
    server_errors = models.PositiveIntegerField(default=0)  # 5xx
    duration_ms_sum = models.FloatField(default=0)
    queries_sum = models.PositiveBigIntegerField(default=0)
    le_10 = models.PositiveIntegerField(default=0)
    le_25 = models.PositiveIntegerField(default=0)
    le_50 = models.PositiveIntegerField(default=0)
    le_75 = models.PositiveIntegerField(default=0)
    le_100 = models.PositiveIntegerField(default=0)
    le_150 = models.PositiveIntegerField(default=0)
    le_250 = models.PositiveIntegerField(default=0)
    le_400 = models.PositiveIntegerField(default=0)
    le_600 = models.PositiveIntegerField(default=0)
    le_1000 = models.PositiveIntegerField(default=0)
    le_2500 = models.PositiveIntegerField(default=0)
    le_5000 = models.PositiveIntegerField(default=0)
    le_10000 = models.PositiveIntegerField(default=0)
    le_inf = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # The flush is an INSERT ... ON CONFLICT (minute, route) DO UPDATE: it needs this.
            models.UniqueConstraint(fields=["minute", "route"], name="request_minute_unique")
        ]
        indexes = [models.Index(fields=["minute"], name="request_minute_minute")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.route}: {self.requests}"


class SystemSample(models.Model):
    """What the host and its services looked like at one moment (taken every minute)."""

    taken_at = models.DateTimeField(db_index=True)
    hostname = models.CharField(max_length=200, blank=True)
    cpu_percent = models.FloatField()
    load_1m = models.FloatField(null=True, blank=True)
    memory_percent = models.FloatField()
    disk_path = models.CharField(max_length=500)
    disk_percent = models.FloatField()
    disk_used_bytes = models.PositiveBigIntegerField()
    disk_total_bytes = models.PositiveBigIntegerField()
    db_size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    redis_used_memory_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    queue_lengths = models.JSONField(default=dict, blank=True)
    backup_size_bytes = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-taken_at"]

    def __str__(self) -> str:
        return f"{self.taken_at:%Y-%m-%d %H:%M} cpu {self.cpu_percent:.0f}%"


class AlertState(models.Model):
    """The current (or last) incident of one alert rule; it makes notifications one per
    incident: a message when it opens, none while it stays open, one when it resolves."""

    name = models.CharField(max_length=100, unique=True)
    is_open = models.BooleanField(default=False)
    summary = models.TextField(blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    # When the rule started failing without a break; a rule with a grace period
    # (MONITORING_ALERT_GRACE_SECONDS) opens only once it has failed that long.
    failing_since = models.DateTimeField(null=True, blank=True)
    incidents = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {'open' if self.is_open else 'ok'}"
