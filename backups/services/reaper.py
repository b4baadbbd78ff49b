"""The reaper: a run whose worker died (killed, out of memory, host lost) stays `running`
forever unless someone notices. This marks such runs failed and removes their leftovers."""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..destinations import destination_get
from ..locking import lock_is_free
from ..models import BackupRun
from .database import delete_run_objects
from .runs import backup_run_fail

logger = logging.getLogger(__name__)

# A run younger than this is never judged by the lock alone: its process may be between
# creating the row and its first heartbeat.
LOCK_GRACE = datetime.timedelta(seconds=30)


def backup_runs_reap(*, now: datetime.datetime | None = None) -> list[BackupRun]:
    """Fail every `running` run that is past the time limit, whose heartbeat stopped, or that
    nobody is running (the backup lock is free: its holder's session ended). Returns them."""
    now = now or timezone.now()
    running = BackupRun.objects.running()
    stale = Q(started_at__lt=now - datetime.timedelta(seconds=settings.BACKUP_TIME_LIMIT)) | Q(
        heartbeat_at__lt=now - datetime.timedelta(seconds=settings.BACKUP_HEARTBEAT_TIMEOUT)
    )
    dead = {run.pk: run for run in running.filter(stale)}
    orphaned = running.filter(started_at__lt=now - LOCK_GRACE).exclude(pk__in=dead)
    if orphaned.exists() and lock_is_free():
        # The lock is taken before a run row is created and held until it is finished, so a
        # free lock means no live process owns these rows.
        dead.update({run.pk: run for run in orphaned})
    reaped = []
    if lock_is_free():
        # Nobody is writing: unfinished writes older than the heartbeat timeout belong to dead
        # workers (a killed media increment leaves some beside its objects, for instance).
        for name in settings.BACKUP_DESTINATIONS:
            try:
                destination_get(name).remove_stale_partials(settings.BACKUP_HEARTBEAT_TIMEOUT)
            except Exception:
                logger.warning("could not sweep %s for unfinished writes", name, exc_info=True)
    for run in dead.values():
        last = run.heartbeat_at or run.started_at
        delete_run_objects(run)
        reaped.append(
            backup_run_fail(
                run=run,
                error=(
                    f"The worker {run.worker or '?'} died or was stopped: no heartbeat since "
                    f"{last:%Y-%m-%d %H:%M:%S %Z}. Its partial objects were removed."
                ),
            )
        )
    return reaped
