"""Periodic jobs of the monitoring app, written into django-celery-beat by setup_periodic_tasks."""

from __future__ import annotations

from school_site.periodic import PeriodicJob, every

PERIODIC_JOBS = [
    # Every minute: the beat health check calls beat dead after a few missed minutes, so the
    # stamp must be fresher than that threshold.
    PeriodicJob(
        name="Celery beat heartbeat",
        task="monitoring.tasks.beat_heartbeat",
        schedule=every(seconds=60),
    ),
]
