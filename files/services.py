"""Writes of the documents app: uploads, restores, deletion, download links and the clean-up
jobs. Each is safe to call from a view, a Celery task or a command.

Storing content and writing rows happen in one transaction, serialized per content address
by a PostgreSQL advisory lock: two uploads of the same bytes, or an upload racing the purge
of the last document that held them, can never leave a row without its object or delete an
object a new row just took. If anything after the write fails, the object written for this
call is deleted again, so a refused or failed upload leaves neither a row nor an object.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import Actor, as_user, audit_record
from students.models import School, Student

from .models import Document, DocumentVersion, StoredObject
from .scanning import get_scanner
from .storage import (
    INCOMING_DIR,
    DocumentStore,
    DownloadLink,
    StorageUnavailable,
    content_key,
    document_store,
)
from .validation import CheckedUpload, check_upload

logger = logging.getLogger(__name__)


class DocumentUnavailable(Exception):
    """The document exists but cannot be downloaded now; the message says why."""


# ---------------------------------------------------------------------------------------------
# Helpers shared by the services
# ---------------------------------------------------------------------------------------------
def version_cache_key(version_id: int) -> str:
    return f"files:version:{version_id}:meta"


def _forget_versions(version_ids: list[int]) -> None:
    """Drop cached metadata of these versions once the transaction commits."""
    keys = [version_cache_key(pk) for pk in version_ids]
    if keys:
        transaction.on_commit(lambda: cache.delete_many(keys))


def _content_lock(key: str) -> None:
    """Serialize everything that stores or deletes one content address until commit.
    SQLite (embedded mode) serializes all writers already."""
    if connection.vendor != "postgresql":
        return
    lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


@contextlib.contextmanager
def _stored_content(
    *, store: DocumentStore, file: File, checked: CheckedUpload, sensitive: bool
) -> Iterator[StoredObject]:
    """The StoredObject for this content, storing it first if it is new. Must run inside a
    transaction; if the block raises, an object written here is deleted again."""
    sealed = store.seals(sensitive=sensitive)
    key = content_key(sha256=checked.sha256, sealed=sealed)
    _content_lock(key)
    existing = StoredObject.objects.select_for_update().filter(key=key).first()
    if existing is not None:
        yield existing
        return
    try:
        wrote = store.put(key=key, source=file, sealed=sealed, content_type=checked.content_type)
    except StorageUnavailable:
        # The uploader sees a short message; the operator needs the cause (a full disk, an
        # endpoint down, refused credentials), so it goes to the log with its traceback.
        logger.error("storing document content %s failed", key, exc_info=True)
        raise
    try:
        stored = StoredObject(
            key=key,
            sha256=checked.sha256,
            size=checked.size,
            sealed=sealed,
            scan_status=(
                StoredObject.ScanStatus.PENDING
                if get_scanner() is not None
                else StoredObject.ScanStatus.NOT_SCANNED
            ),
        )
        stored.full_clean()
        stored.save()
        yield stored
    except BaseException:
        if wrote:
            with contextlib.suppress(StorageUnavailable):
                store.delete(key)
        raise
    _after_new_content(stored)


def _after_new_content(stored: StoredObject) -> None:
    """Queue the scan and (hybrid mode) the cloud copy once the rows are committed."""
    from . import tasks

    pk = stored.pk
    # robust: by then the upload is committed; a broker that is down (Redis outage) is logged
    # instead of answering a 500 for a saved file. The replication sweep (replicate_pending)
    # copies what was never queued.
    if stored.scan_status == StoredObject.ScanStatus.PENDING:
        transaction.on_commit(lambda: tasks.scan_stored_object.delay(pk), robust=True)
    if "documents_replica" in settings.STORAGES:
        transaction.on_commit(lambda: tasks.replicate_stored_object.delay(pk), robust=True)


def _version_add(
    *,
    document: Document,
    stored: StoredObject,
    size: int,
    sha256: str,
    content_type: str,
    original_name: str,
    comment: str,
    actor: Actor,
    restored_from: DocumentVersion | None = None,
) -> DocumentVersion:
    # The document row is locked by the caller, so two uploads cannot take the same number.
    last = document.versions.aggregate(last=Max("number"))["last"] or 0
    version = DocumentVersion(
        school_id=document.school_id,
        document=document,
        number=last + 1,
        stored=stored,
        size=size,
        sha256=sha256,
        content_type=content_type,
        original_name=original_name,
        uploaded_by=as_user(actor),
        comment=comment.strip()[:500],
        restored_from=restored_from,
    )
    version.full_clean()
    version.save()
    document.current_version = version
    document.save(update_fields=["current_version", "updated_at"])
    return version


def _upload_store(
    *,
    document: Document,
    file: File,
    checked: CheckedUpload,
    comment: str,
    actor: Actor,
    audit_extra: dict[str, str] | None = None,
) -> DocumentVersion:
    """Store checked content (once per content address) as the document's next version and
    audit it, in the caller's transaction."""
    with _stored_content(
        store=document_store(), file=file, checked=checked, sensitive=document.sensitive
    ) as stored:
        version = _version_add(
            document=document,
            stored=stored,
            size=checked.size,
            sha256=checked.sha256,
            content_type=checked.content_type,
            original_name=checked.name,
            comment=comment,
            actor=actor,
        )
        audit_record(
            actor=actor,
            action="document_upload",
            target=document,
            changes={
                "version": version.number,
                "name": checked.name,
                "size": checked.size,
                "sha256": checked.sha256,
                **(audit_extra or {}),
            },
        )
    return version


def _locked_live_document(document: Document) -> Document:
    locked = Document.objects.select_for_update().get(pk=document.pk)
    if locked.is_deleted:
        raise ValidationError("This document is in the trash; restore it before changing it.")
    return locked


# ---------------------------------------------------------------------------------------------
# Uploads, restores, deletion
# ---------------------------------------------------------------------------------------------
@transaction.atomic
def document_create(
    *,
    school: School,
    student: Student | None,
    title: str,
    category: str,
    sensitive: bool,
    file: File,
    comment: str = "",
    actor: Actor,
) -> Document:
    """A new document with its first version. The upload is validated before anything is
    stored; categories such as medical records are always sensitive."""
    checked = check_upload(file=file, category=category)
    document = Document(
        school=school,
        student=student,
        title=(title or "").strip() or checked.name,
        category=category,
        sensitive=sensitive or category in Document.SENSITIVE_CATEGORIES,
        created_by=as_user(actor),
    )
    document.full_clean()
    document.save()
    _upload_store(
        document=document,
        file=file,
        checked=checked,
        comment=comment,
        actor=actor,
        audit_extra={"category": category},
    )
    return document


@transaction.atomic
def document_version_create(
    *, document: Document, file: File, comment: str = "", actor: Actor
) -> DocumentVersion:
    """Upload a new version of a document; earlier versions stay untouched."""
    document = _locked_live_document(document)
    checked = check_upload(file=file, category=document.category)
    version = _upload_store(
        document=document, file=file, checked=checked, comment=comment, actor=actor
    )
    return version


@transaction.atomic
def document_version_restore(*, version: DocumentVersion, actor: Actor) -> DocumentVersion:
    """Make an old version current again by adding a new version with the same content.
    Nothing is copied: the new row points at the same stored object."""
    document = _locked_live_document(version.document)
    stored = StoredObject.objects.select_for_update().get(pk=version.stored.pk)
    if stored.is_quarantined:
        raise ValidationError("This version is quarantined (malware found) and cannot be restored.")
    restored = _version_add(
        document=document,
        stored=stored,
        size=version.size,
        sha256=version.sha256,
        content_type=version.content_type,
        original_name=version.original_name,
        comment=f"Restored from version {version.number}",
        actor=actor,
        restored_from=version,
    )
    audit_record(
        actor=actor,
        action="document_restore",
        target=document,
        changes={"restored_version": version.number, "new_version": restored.number},
    )
    return restored


@transaction.atomic
def document_delete(*, document: Document, actor: Actor) -> Document:
    """Move a document to the trash. Its content is purged after DOCUMENTS_RETENTION_DAYS,
    so a mistaken deletion can be undone until then."""
    document = _locked_live_document(document)
    document.deleted_at = timezone.now()
    document.deleted_by = as_user(actor)
    document.full_clean()
    document.save(update_fields=["deleted_at", "deleted_by", "updated_at"])
    audit_record(actor=actor, action="document_delete", target=document)
    _forget_versions(list(document.versions.values_list("pk", flat=True)))
    return document


@transaction.atomic
def document_undelete(*, document: Document, actor: Actor) -> Document:
    """Take a document back out of the trash before it is purged."""
    document = Document.objects.select_for_update().get(pk=document.pk)
    if not document.is_deleted:
        return document
    document.deleted_at = None
    document.deleted_by = None
    document.save(update_fields=["deleted_at", "deleted_by", "updated_at"])
    audit_record(actor=actor, action="document_undelete", target=document)
    _forget_versions(list(document.versions.values_list("pk", flat=True)))
    return document


# ---------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------
@transaction.atomic
def document_download_link_issue(*, version: DocumentVersion, actor: User) -> DownloadLink:
    """A short-lived link to one version, and the access entry (who, what, when, from where)
    recording the disclosure. No link, no entry: a store that is down records nothing."""
    document = version.document
    if document.is_deleted:
        raise DocumentUnavailable("This document is in the trash.")
    stored = version.stored
    if stored.scan_status == StoredObject.ScanStatus.PENDING:
        raise DocumentUnavailable(
            "This file is still being checked for viruses. Try again in a minute."
        )
    if stored.is_quarantined:
        raise DocumentUnavailable(
            "This file is quarantined: the virus scanner found "
            f"{stored.scan_signature or 'malware'} in it."
        )
    link = document_store().link(
        key=stored.key,
        sealed=stored.sealed,
        version_id=version.pk,
        school_id=version.school_id,
        user_id=actor.pk,
        filename=version.original_name,
        content_type=version.content_type,
    )
    audit_record(
        actor=actor,
        action="document_download",
        target=version,
        student_id=document.student_id,
        changes={
            "document": document.pk,
            "title": document.title,
            "version": version.number,
            "via": link.via,
        },
    )
    return link


# ---------------------------------------------------------------------------------------------
# Scanning and replication (called by Celery tasks)
# ---------------------------------------------------------------------------------------------
def stored_object_scan(*, stored_object_id: int) -> str:
    """Scan pending content with the configured scanner and record the verdict. Reading and
    scanning run outside any transaction: a 1 GB scan must not hold row locks."""
    scanner = get_scanner()
    stored = StoredObject.objects.get(pk=stored_object_id)
    if scanner is None or stored.scan_status != StoredObject.ScanStatus.PENDING:
        return str(stored.scan_status)
    verdict = scanner.scan(document_store().chunks(key=stored.key, sealed=stored.sealed))
    return stored_object_scan_record(
        stored_object_id=stored_object_id, clean=verdict.clean, signature=verdict.signature
    )


@transaction.atomic
def stored_object_scan_record(*, stored_object_id: int, clean: bool, signature: str = "") -> str:
    """Record a scan verdict. Infected content is quarantined: every version holding it, in
    every document and school, can no longer be downloaded or restored, and each school's
    trail says so."""
    stored = StoredObject.objects.select_for_update().get(pk=stored_object_id)
    stored.scan_status = (
        StoredObject.ScanStatus.CLEAN if clean else StoredObject.ScanStatus.INFECTED
    )
    stored.scan_signature = "" if clean else (signature or "unknown")[:200]
    stored.scanned_at = timezone.now()
    stored.save(update_fields=["scan_status", "scan_signature", "scanned_at"])
    versions = list(stored.versions.select_related("document"))
    if not clean:
        for version in versions:
            audit_record(
                actor=None,
                action="document_quarantine",
                target=version,
                student_id=version.document.student_id,
                changes={"signature": stored.scan_signature, "version": version.number},
            )
    _forget_versions([v.pk for v in versions])
    return str(stored.scan_status)


def stored_object_replicate(*, stored_object_id: int) -> bool:
    """Copy one object to the hybrid replica. True when a copy was made now. Raises
    StorageUnavailable (after recording the error) so the task can retry later."""
    store = document_store()
    if store.replica is None:
        return False
    stored = StoredObject.objects.get(pk=stored_object_id)
    if stored.replicated_at is not None:
        return False
    try:
        content_type = (
            stored.versions.values_list("content_type", flat=True).first()
            or "application/octet-stream"
        )
        copied = store.replicate(key=stored.key, sealed=stored.sealed, content_type=content_type)
    except StorageUnavailable as exc:
        StoredObject.objects.filter(pk=stored.pk).update(replication_error=str(exc)[:500])
        raise
    StoredObject.objects.filter(pk=stored.pk).update(
        replicated_at=timezone.now(), replication_error=""
    )
    return copied


def stored_objects_replicate_pending(*, limit: int = 500) -> int:
    """Replicate objects still owed a cloud copy, oldest first; one failure does not stop
    the others. Returns how many are now replicated."""
    if "documents_replica" not in settings.STORAGES:
        return 0
    done = 0
    pending = StoredObject.objects.filter(replicated_at__isnull=True).order_by("created_at")
    for pk in pending.values_list("pk", flat=True)[:limit]:
        try:
            stored_object_replicate(stored_object_id=pk)
            done += 1
        except Exception:
            logger.warning("replication of stored object %s failed", pk, exc_info=True)
    return done


# ---------------------------------------------------------------------------------------------
# Clean-up jobs
# ---------------------------------------------------------------------------------------------
@dataclass
class PurgeResult:
    documents: int = 0
    objects: int = 0


def documents_purge_expired(*, now: datetime.datetime | None = None) -> PurgeResult:
    """Delete documents that have been in the trash longer than the retention period, and
    the stored content no other version still holds. One document per transaction, so one
    failure (a store that is down) leaves the rest purged and itself for the next run."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=int(settings.DOCUMENTS_RETENTION_DAYS))
    result = PurgeResult()
    expired = Document.objects.filter(deleted_at__lt=cutoff).order_by("deleted_at")
    for pk in list(expired.values_list("pk", flat=True)):
        try:
            result.objects += document_purge(document_id=pk)
            result.documents += 1
        except Exception:
            logger.warning("purge of document %s failed", pk, exc_info=True)
    return result


@transaction.atomic
def document_purge(*, document_id: int) -> int:
    """Delete one trashed document for good; returns how many stored objects went with it."""
    document = Document.objects.select_for_update().get(pk=document_id)
    if not document.is_deleted:
        raise ValidationError("Only documents in the trash can be purged.")
    versions = list(document.versions.values_list("pk", "stored_id"))
    keys = sorted({str(key) for _pk, key in versions})
    audit_record(
        actor=None,
        action="document_purge",
        target=document,
        changes={"versions": len(versions), "deleted_at": str(document.deleted_at)},
    )
    Document.objects.filter(pk=document.pk).update(current_version=None)
    DocumentVersion.objects.filter(document_id=document.pk).delete()
    document.delete()
    _forget_versions([pk for pk, _key in versions])
    store = document_store()
    removed = 0
    for key in keys:
        _content_lock(key)
        if DocumentVersion.objects.filter(stored__key=key).exists():
            continue  # other documents (maybe other schools) still hold these bytes
        StoredObject.objects.filter(key=key).delete()
        store.delete(key)  # raises StorageUnavailable: the whole purge rolls back
        removed += 1
    return removed


def abandoned_uploads_remove(*, older_than: datetime.timedelta | None = None) -> int:
    """Delete temporary upload files and scratch files left behind by killed workers. An
    upload in progress writes its file continuously, so its modification time stays fresh."""
    age = older_than or datetime.timedelta(hours=int(settings.DOCUMENTS_TEMP_MAX_AGE_HOURS))
    threshold = time.time() - age.total_seconds()
    folders = [Path(settings.FILE_UPLOAD_TEMP_DIR)]
    store = document_store()
    if store.kind == "local":
        folders.append(Path(store.primary.path(INCOMING_DIR)))
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < threshold:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue  # finished or removed meanwhile
    return removed


@dataclass
class OrphanReport:
    checked: int = 0
    orphan_count: int = 0
    missing_count: int = 0
    orphans: list[str] = field(default_factory=list)  # in storage, no row (a sample)
    missing: list[str] = field(default_factory=list)  # a row, no object (a sample)


def storage_orphans_report(*, sample: int = 50) -> OrphanReport:
    """Compare the objects in the primary store with the rows that reference them. Nothing
    is deleted: an orphan may be an upload committing right now, so a person decides."""
    store = document_store()
    known = set(StoredObject.objects.values_list("key", flat=True))
    present = set(store.keys())
    report = OrphanReport(checked=len(present))
    orphans = sorted(present - known)
    missing = sorted(
        key
        for key in known - present
        # In hybrid mode a replicated object whose local copy is gone is still readable.
        if not (
            store.replica is not None
            and StoredObject.objects.filter(key=key, replicated_at__isnull=False).exists()
        )
    )
    report.orphan_count, report.missing_count = len(orphans), len(missing)
    report.orphans, report.missing = orphans[:sample], missing[:sample]
    if orphans or missing:
        logger.warning(
            "document storage: %d orphaned objects, %d missing objects",
            len(orphans),
            len(missing),
            extra={"orphans": orphans[:sample], "missing": missing[:sample]},
        )
    return report
