"""Periodic jobs of the monitoring app, written into django-celery-beat by setup_periodic_tasks."""

from __future__ import annotations

from school_site.periodic import PeriodicJob, cron, every

PERIODIC_JOBS = [
    # Every minute: the beat health check calls beat dead after a few missed minutes, so the
    # stamp must be fresher than that threshold.
    PeriodicJob(
        name="Celery beat heartbeat",
        task="monitoring.tasks.beat_heartbeat",
        schedule=every(seconds=60),
    ),
    # Every minute: the performance page plots per-minute points, and a disk filling up or a
    # queue backing up shows within a minute. 1,440 small rows a day.
    PeriodicJob(
        name="Monitoring system sample",
        task="monitoring.tasks.system_sample_take",
        schedule=every(seconds=60),
    ),
    # Every minute: an incident is noticed within a minute or two. Notifications are
    # deduplicated, so a fast cadence does not mean more mail.
    PeriodicJob(
        name="Monitoring alerts",
        task="monitoring.tasks.alerts_evaluate",
        schedule=every(seconds=60),
    ),
    # Hourly, off the hour (backups and reports start on it): retention is in days, so an
    # hour of overshoot is nothing, and each run deletes only an hour's worth of rows.
    PeriodicJob(
        name="Monitoring prune",
        task="monitoring.tasks.monitoring_prune",
        schedule=cron(minute="17"),
    ),
]
