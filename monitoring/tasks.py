"""Periodic monitoring jobs (declared in schedules.py). Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="monitoring.tasks.beat_heartbeat", ignore_result=False)
def beat_heartbeat() -> str:
    """Prove that beat schedules, the broker delivers and a worker runs: stamp a heartbeat."""
    from celery import current_task

    from .services import heartbeat_record

    beat = heartbeat_record(name="celery-beat", hostname=current_task.request.hostname or "")
    return beat.last_seen.isoformat()


@shared_task(name="monitoring.tasks.system_sample_take", ignore_result=True)
def system_sample_take() -> int:
    """Keep one SystemSample (CPU, memory, disk, database and Redis size, queue lengths)."""
    from .services import system_sample_take as take

    return take().pk


@shared_task(name="monitoring.tasks.alerts_evaluate", ignore_result=True)
def alerts_evaluate() -> list[list[str]]:
    """Run the health checks and alert rules; notify on incidents that open or resolve."""
    from .services import alerts_evaluate as evaluate

    return [list(t) for t in evaluate()]


@shared_task(name="monitoring.tasks.monitoring_prune", ignore_result=True)
def monitoring_prune() -> dict[str, int]:
    """Delete slow queries, request figures and samples past their retention."""
    from .services import monitoring_prune as prune

    return prune()
