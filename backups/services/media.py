"""Media backup: an incremental copy of the content-addressed document objects.

Document content is stored under content addresses (`files.storage.content_key`:
`sha256/ab/cd/<sha256>`, `sealed/…`), so an object's name fixes its bytes forever. Each run
takes the objects the documents app records (its StoredObject rows), copies, encrypted, only
those the backups' own record (`MediaObject`) does not show as confirmed at a destination
(`media/objects/<name>`), then writes an encrypted manifest of every recorded object at that
moment (`media/manifests/<stamp>-run<id>.json.tink`). Restoring a manifest brings the store
back to that moment: each object is decrypted, its sha256 checked, and saved under its own
name; an object erased since (see `prune.media_objects_erase`) is reported, not restored.

Why the record: asking every destination and the document store about every object each
hour is one request per document per hour (a HEAD each, and a LIST per hash folder). With the
record an hour costs the new objects' requests and the manifest's, however many documents
there are; the nightly prune lists each destination once to catch copies lost behind our back.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from typing import Any, NamedTuple

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.utils import timezone

from audit.services import Actor, audit_record

from ..crypto import AD_MANIFEST, ad_media_object
from ..destinations import READ_CHUNK, Destination, configured_destinations
from ..locking import backup_lock
from ..models import BackupRun, MediaObject
from ..pipeline import Progress, confirm_object, drain_into, open_plaintext, store_stream
from .database import SIDECAR_SUFFIX
from .runs import backup_run_fail, backup_run_start, backup_run_succeed, heartbeat
from .verify import run_destinations

logger = logging.getLogger(__name__)

OBJECTS = "media/objects/"
MANIFESTS = "media/manifests/"


def media_storage() -> Storage:
    return storages[settings.BACKUP_MEDIA_STORAGE]


def _chunks(storage: Storage, name: str, digest: Any) -> Iterator[bytes]:
    with storage.open(name, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
            yield chunk


def media_object_names() -> list[str]:
    """The document objects to back up: every content key the documents app records, under
    BACKUP_MEDIA_PREFIXES. An object in the store with no row (an upload still committing,
    an orphan) is no document's content; an upload is picked up the hour after it commits."""
    from files.models import StoredObject

    prefixes = tuple(f"{p.rstrip('/')}/" for p in settings.BACKUP_MEDIA_PREFIXES)
    keys = StoredObject.objects.values_list("key", flat=True)
    return sorted(k for k in keys if k.startswith(prefixes))


class Recorded(NamedTuple):
    """One `MediaObject` row as the increment needs it (tuples: a district's 100,000 objects
    would cost hundreds of MB as model instances)."""

    destinations: list[str]
    size: int
    sha256: str
    erased: bool


def media_record() -> dict[str, Recorded]:
    """The backups' record of every document object, by name, in one query."""
    rows = MediaObject.objects.values_list("name", "destinations", "size", "sha256", "erased_at")
    return {
        name: Recorded(list(dests), size, sha256, erased_at is not None)
        for name, dests, size, sha256, erased_at in rows.iterator(chunk_size=5000)
    }


def _copy_new_object(
    *, storage: Storage, name: str, missing: list[Destination], row: Recorded | None
) -> tuple[Recorded | None, bool]:
    """Bring one object's copy to the destinations in `missing` and record it; returns the
    record and whether anything was written. Only objects the record does not show there get
    here, so these requests are per new object, not per object per hour. (None, False) when
    the store no longer has the content (purged meanwhile)."""
    key = OBJECTS + name
    # A copy may be there without a record: written before the record existed, or by a run
    # that died between the upload and the record. One HEAD per destination finds it.
    absent = [d for d in missing if d.size(key) is None]
    size: int | None = row.size if row and not row.erased else None
    sha256 = row.sha256 if row and not row.erased else ""
    if absent:
        digest = hashlib.sha256()
        try:
            stored = store_stream(
                chunks=_chunks(storage, name, digest),
                destinations=absent,
                key=key,
                associated_data=ad_media_object(name),
                compress=False,  # documents are mostly PDFs and images: compressed
            )
        except Exception:
            if not storage.exists(name):
                logger.warning("media backup: %s left the document store; not copied", name)
                return None, False
            raise
        for destination in absent:
            confirm_object(
                destination=destination, key=key, size=stored.stored_size, sha256=stored.sha256
            )
        size, sha256 = stored.raw_size, digest.hexdigest()
    elif size is None:
        size = storage.size(name)  # adopting an old copy: once per object, never again
    kept = row.destinations if row and not row.erased else []
    held = sorted({*kept, *(d.name for d in missing)})
    MediaObject.objects.update_or_create(
        name=name,
        defaults={
            "size": size,
            "sha256": sha256,
            "destinations": held,
            "copied_at": timezone.now(),
            "erased_at": None,
        },
    )
    return Recorded(held, size, sha256, False), bool(absent)


def backup_media_run(
    *,
    trigger: str = BackupRun.Trigger.MANUAL,
    actor: Actor = None,
    progress: Progress | None = None,
) -> BackupRun:
    """Copy the document objects each destination lacks, then write this run's manifest.

    Succeeds only when every copied object and the manifest were confirmed at every
    destination; a failure removes the objects this run wrote that were not confirmed.
    Requests to the stores: per new object and for the manifest, never per object already
    recorded (`MediaObject`).
    """
    with backup_lock(wait_seconds=10):
        run = backup_run_start(kind=BackupRun.Kind.MEDIA, trigger=trigger, actor=actor)
        destinations: list[Destination] = []
        try:
            with heartbeat(run):
                storage = media_storage()
                destinations = configured_destinations()
                stamp = run.started_at.astimezone(datetime.UTC)
                run.object_key = f"{MANIFESTS}{stamp:%Y%m%dT%H%M%SZ}-run{run.pk}.json.tink"
                run.engine = "media"
                run.destinations = [
                    {"name": d.name, "key": run.object_key, "confirmed": False}
                    for d in destinations
                ]
                run.save(update_fields=["object_key", "engine", "destinations"])
                names = media_object_names()
                record = media_record()
                entries: list[dict[str, Any]] = []
                copied = already = raw_total = 0
                for name in names:
                    row = record.get(name)
                    held = set(row.destinations) if row and not row.erased else set()
                    missing = [d for d in destinations if d.name not in held]
                    if row is not None and not missing:
                        already += 1  # recorded as confirmed everywhere: no request at all
                    else:
                        row, wrote = _copy_new_object(
                            storage=storage, name=name, missing=missing, row=row
                        )
                        if row is None:
                            continue
                        if wrote:
                            copied += 1
                            raw_total += row.size
                            if progress:
                                progress(1)
                    entry: dict[str, Any] = {"name": name, "size": row.size}
                    if row.sha256:
                        entry["sha256"] = row.sha256
                    entries.append(entry)
                manifest = json.dumps(
                    {
                        "format": "schoolhouse-media-manifest/1",
                        "run_id": run.pk,
                        "created_at": stamp.isoformat(),
                        "storage": settings.BACKUP_MEDIA_STORAGE,
                        "objects": entries,
                    }
                ).encode()
                stored_manifest = store_stream(
                    chunks=[manifest],
                    destinations=destinations,
                    key=run.object_key,
                    associated_data=AD_MANIFEST,
                    compress=True,
                )
                for destination in destinations:
                    confirm_object(
                        destination=destination,
                        key=run.object_key,
                        size=stored_manifest.stored_size,
                        sha256=stored_manifest.sha256,
                    )
                confirmed_at = timezone.now().isoformat()
                return backup_run_succeed(
                    run=run,
                    destinations=[
                        {
                            "name": d.name,
                            "key": run.object_key,
                            "size": stored_manifest.stored_size,
                            "sha256": stored_manifest.sha256,
                            "confirmed": True,
                            "confirmed_at": confirmed_at,
                        }
                        for d in destinations
                    ],
                    raw_size=raw_total,
                    stored_size=stored_manifest.stored_size,
                    sha256=stored_manifest.sha256,
                    key_id=stored_manifest.key_id,
                    objects_copied=copied,
                    objects_present=already,
                )
        except Exception as exc:
            # Objects already confirmed are content-addressed, complete and recorded, so a
            # later run reuses them; only this run's manifest (and any partial) goes.
            for destination in destinations:
                with contextlib.suppress(Exception):
                    destination.remove_partials(run.object_key)
                    destination.delete(run.object_key)
            return backup_run_fail(run=run, error=f"{type(exc).__name__}: {exc}")


def media_manifest_read(run: BackupRun) -> dict[str, Any]:
    destination, entry = run_destinations(run)[0]
    with open_plaintext(
        destination=destination,
        key=entry.get("key") or run.object_key,
        associated_data=AD_MANIFEST,
        key_id=run.key_id,
        compressed=True,
    ) as (plain, _hashing):
        buffer = io.BytesIO()
        drain_into(plain, buffer)
    return dict(json.loads(buffer.getvalue()))


class MediaRestoreCount(NamedTuple):
    restored: int  # put back into the document store
    skipped: int  # already there (kept, unless `force`)
    erased: int  # purged or erased on request since the manifest: deliberately gone


def media_restore(
    *, run: BackupRun, force: bool = False, actor: Actor = None, progress: Progress | None = None
) -> MediaRestoreCount:
    """Put back every object of the run's manifest that the store lacks (or all, with
    `force`). Each object's sha256 is checked before it is saved. An object whose copies the
    prune erased (its document was purged after this manifest was written) is counted, not
    restored: erasure must survive a restore of an older backup."""
    if run.kind != BackupRun.Kind.MEDIA or not run.is_restorable:
        raise ValueError(f"Backup #{run.pk} is not a finished media backup.")
    manifest = media_manifest_read(run)
    storage = media_storage()
    destination = run_destinations(run)[0][0]
    erased_names = set(
        MediaObject.objects.filter(
            name__in=[item["name"] for item in manifest["objects"]], erased_at__isnull=False
        ).values_list("name", flat=True)
    )
    restored = skipped = erased = 0
    for item in manifest["objects"]:
        name = item["name"]
        if name in erased_names:
            erased += 1
            continue
        if storage.exists(name) and not force:
            skipped += 1
            continue
        with (
            tempfile.TemporaryFile() as tmp,
            open_plaintext(
                destination=destination,
                key=OBJECTS + name,
                associated_data=ad_media_object(name),
                key_id=None,
                compressed=False,
            ) as (plain, _hashing),
        ):
            digest = hashlib.sha256()
            while chunk := plain.read(READ_CHUNK):
                digest.update(chunk)
                tmp.write(chunk)
            if item.get("sha256") and digest.hexdigest() != item["sha256"]:
                raise ValueError(f"{name}: restored content does not match its checksum.")
            tmp.seek(0)
            if storage.exists(name):
                storage.delete(name)
            saved = storage.save(name, File(tmp, name=name.rsplit("/", 1)[-1]))
            if saved != name:
                raise ValueError(f"{name}: the store saved it as {saved}.")
        restored += 1
        if progress:
            progress(1)
    audit_record(
        actor=actor,
        action="backup_media_restore",
        target=run,
        changes={"restored": restored, "skipped": skipped, "erased": erased},
    )
    return MediaRestoreCount(restored, skipped, erased)


__all__ = [
    "MANIFESTS",
    "OBJECTS",
    "SIDECAR_SUFFIX",
    "MediaRestoreCount",
    "backup_media_run",
    "media_object_names",
    "media_record",
    "media_restore",
    "media_storage",
]
