"""The life of a BackupRun row: start, heartbeat, succeed, fail."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from audit.services import Actor, as_user, audit_record

from ..models import BackupRun

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@transaction.atomic
def backup_run_start(*, kind: str, trigger: str, actor: Actor = None) -> BackupRun:
    """Record that a backup starts now, in this process (the reaper watches `heartbeat_at`)."""
    now = timezone.now()
    run = BackupRun(
        kind=kind,
        trigger=trigger,
        status=BackupRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker_name(),
        requested_by=as_user(actor),
    )
    run.full_clean()
    run.save()
    audit_record(actor=actor, action="backup_start", target=run, changes={"kind": kind})
    return run


@transaction.atomic
def backup_run_succeed(*, run: BackupRun, **fields: Any) -> BackupRun:
    for name, value in fields.items():
        setattr(run, name, value)
    run.status = BackupRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.error = ""
    run.full_clean()
    run.save()
    return run


def backup_run_fail(*, run: BackupRun, error: str) -> BackupRun:
    """Mark the run failed with its error and alert the administrators."""
    from .alerts import backup_failure_alert

    with transaction.atomic():
        run.status = BackupRun.Status.FAILED
        run.finished_at = timezone.now()
        run.error = error[:10_000]
        run.save(update_fields=["status", "finished_at", "error"])
        audit_record(actor=None, action="backup_fail", target=run, changes={"error": error[:500]})
    backup_failure_alert(
        run=run, summary=f"{run.get_kind_display()} backup #{run.pk} failed", detail=error
    )
    return run


@contextlib.contextmanager
def heartbeat(run: BackupRun) -> Iterator[None]:
    """Stamp `heartbeat_at` every BACKUP_HEARTBEAT_SECONDS while the block runs, from a thread
    with its own database connection, so the reaper can tell a live run from a dead one."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.BACKUP_HEARTBEAT_SECONDS):
                try:
                    BackupRun.objects.filter(pk=run.pk, status=BackupRun.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:  # a missed beat is not fatal; the next one may succeed
                    logger.warning("backup heartbeat failed", exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"backup-heartbeat-{run.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
