"""Periodic monitoring jobs."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="monitoring.tasks.beat_heartbeat", ignore_result=False)
def beat_heartbeat() -> str:
    """Prove that beat schedules, the broker delivers and a worker runs: stamp a heartbeat."""
    from celery import current_task

    from .services import heartbeat_record

    beat = heartbeat_record(name="celery-beat", hostname=current_task.request.hostname or "")
    return beat.last_seen.isoformat()
