"""Celery tasks: thin adapters that call one service each (routed to the maintenance queue).

Backups may take longer than the platform's default task time limit, so each sets its own
from BACKUP_TIME_LIMIT. A backup that finds the lock taken is retried later rather than
reported as failed: the hourly media increment often meets the nightly dump.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from students.row_security import every_school

from .locking import BackupBusy

# Backups are the district's: each task acts for every school (row-level security), as the
# media increment and the prune read every school's documents through the ORM.

LIMITS: dict[str, Any] = {
    "soft_time_limit": settings.BACKUP_TIME_LIMIT,
    "time_limit": settings.BACKUP_TIME_LIMIT + 120,
}
BUSY_RETRY: dict[str, Any] = {
    "autoretry_for": (BackupBusy,),
    "retry_backoff": 120,
    "retry_backoff_max": 30 * 60,
    "max_retries": 12,
}


def _actor(user_id: int | None) -> Any:
    if user_id is None:
        return None
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id).first()


@shared_task(name="backups.tasks.backup_database", **LIMITS, **BUSY_RETRY)
@every_school
def backup_database(trigger: str = "schedule", user_id: int | None = None) -> dict[str, Any]:
    from .services import backup_database_run

    run = backup_database_run(trigger=trigger, actor=_actor(user_id))
    return {"run": run.pk, "status": run.status}


@shared_task(name="backups.tasks.backup_media", **LIMITS, **BUSY_RETRY)
@every_school
def backup_media(trigger: str = "schedule", user_id: int | None = None) -> dict[str, Any]:
    from .services import backup_media_run

    run = backup_media_run(trigger=trigger, actor=_actor(user_id))
    return {"run": run.pk, "status": run.status}


@shared_task(name="backups.tasks.verify_backup", **LIMITS, **BUSY_RETRY)
@every_school
def verify_backup(run_id: int | None = None, user_id: int | None = None) -> dict[str, Any]:
    """Verify one run, or the latest database backup when no id is given (the weekly job)."""
    from .models import BackupRun
    from .services import backup_verify, latest_database_run

    run = BackupRun.objects.get(pk=run_id) if run_id else latest_database_run()
    if run is None:
        return {"run": None, "verification": "nothing to verify"}
    run = backup_verify(run=run, actor=_actor(user_id))
    return {"run": run.pk, "verification": run.verification}


@shared_task(name="backups.tasks.prune_backups", **BUSY_RETRY)
@every_school
def prune_backups() -> dict[str, Any]:
    from .services import backups_prune

    report = backups_prune()
    return {"deleted": report.deleted, "erased": report.erased, "errors": report.errors}


@shared_task(name="backups.tasks.reap_backups")
@every_school
def reap_backups() -> list[int]:
    from .services import backup_runs_reap

    return [run.pk for run in backup_runs_reap()]


@shared_task(name="backups.tasks.backup_physical", **LIMITS, **BUSY_RETRY)
@every_school
def backup_physical(
    backup_type: str = "diff", trigger: str = "schedule", user_id: int | None = None
) -> dict[str, Any]:
    """A pgBackRest full, differential or incremental backup (point-in-time recovery)."""
    from .services.physical import physical_backup_run

    run = physical_backup_run(backup_type=backup_type, trigger=trigger, actor=_actor(user_id))
    return {"run": run.pk, "status": run.status, "label": run.label}


@shared_task(name="backups.tasks.pitr_check")
def pitr_check() -> dict[str, Any]:
    """`pgbackrest check` (a WAL switch archived end to end, every repository answering); the
    result is kept for the health check, and a failure alerts at once."""
    from .services.physical import pitr_check_run

    return pitr_check_run()


@shared_task(name="backups.tasks.pitr_drill_mark", **LIMITS)
@every_school
def pitr_drill_mark(jitter_seconds: int = 0) -> dict[str, Any]:
    """A drill mark (a fingerprinted restore point). Beat calls it on the hour with
    `jitter_seconds`: it then queues the mark itself at a random moment of that span, so
    the marks, and the drill's targets, fall at any minute of the school day."""
    import random

    from .services.drill import drill_mark_create

    if jitter_seconds:
        delay = random.uniform(0, jitter_seconds)  # noqa: S311 - a moment, not a secret
        pitr_drill_mark.apply_async(countdown=delay)
        return {"queued_in_seconds": round(delay)}
    mark = drill_mark_create()
    return {"mark": mark.name, "lock_seconds": mark.lock_seconds}


@shared_task(name="backups.tasks.pitr_drill", **LIMITS, **BUSY_RETRY)
@every_school
def pitr_drill(mark_name: str = "", user_id: int | None = None) -> dict[str, Any]:
    """The restore drill: restore a random mark of the last day into a throwaway cluster and
    write a receipt per school; a failure is alerted by the service."""
    from .services.drill import pitr_drill_run

    outcome = pitr_drill_run(mark_name=mark_name, actor=_actor(user_id))
    return {"drill": outcome.drill, "passed": outcome.passed, "error": outcome.error}
