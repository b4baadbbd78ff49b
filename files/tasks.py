"""Celery tasks of the documents app. Thin: each takes ids, imports its service inside the
body and calls it; retries and failure handling stay here."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from students.row_security import every_school

# Every task here is the district's: stored objects are content-addressed and shared by the
# schools' documents, so each acts for every school (row-level security, students.row_security).


@shared_task(
    name="files.tasks.scan_stored_object",
    bind=True,
    max_retries=12,
    acks_late=True,
)
@every_school
def scan_stored_object(self: Any, stored_object_id: int) -> str:
    """Scan new content; a scanner that is down is retried with growing delays (up to ~1 h)."""
    from .scanning import ScannerUnavailable
    from .services import stored_object_scan

    try:
        return stored_object_scan(stored_object_id=stored_object_id)
    except ScannerUnavailable as exc:
        raise self.retry(exc=exc, countdown=min(30 * 2**self.request.retries, 600)) from exc


@shared_task(name="files.tasks.replicate_stored_object", bind=True, max_retries=5)
@every_school
def replicate_stored_object(self: Any, stored_object_id: int) -> bool:
    """Copy one object to the hybrid replica; the periodic sweep catches what retries miss."""
    from .services import stored_object_replicate
    from .storage import StorageUnavailable

    try:
        return stored_object_replicate(stored_object_id=stored_object_id)
    except StorageUnavailable as exc:
        first = settings.DOCUMENTS_REPLICATION_RETRY_SECONDS
        raise self.retry(exc=exc, countdown=min(first * 2**self.request.retries, 900)) from exc


@shared_task(name="files.tasks.replicate_pending")
@every_school
def replicate_pending(limit: int = 500) -> int:
    from .services import stored_objects_replicate_pending

    return stored_objects_replicate_pending(limit=limit)


@shared_task(name="files.tasks.purge_deleted_documents")
@every_school
def purge_deleted_documents() -> dict[str, int]:
    from .services import documents_purge_expired

    result = documents_purge_expired()
    return {"documents": result.documents, "objects": result.objects}


@shared_task(name="files.tasks.remove_abandoned_uploads")
@every_school
def remove_abandoned_uploads() -> int:
    from .services import abandoned_uploads_remove

    return abandoned_uploads_remove()


@shared_task(name="files.tasks.report_orphaned_objects")
@every_school
def report_orphaned_objects() -> dict[str, Any]:
    from .services import storage_orphans_report

    report = storage_orphans_report()
    return {
        "checked": report.checked,
        "orphans": report.orphan_count,
        "missing": report.missing_count,
        "orphan_sample": report.orphans,
        "missing_sample": report.missing,
    }
