"""Media backup: an incremental copy of the content-addressed document objects.

Document content is stored under content addresses (`files.storage.content_key`:
`sha256/ab/cd/<sha256>`, `sealed/…`), so an object's name fixes its bytes forever. Each run
copies, encrypted, only the objects a destination does not hold yet (`media/objects/<name>`),
then writes an encrypted manifest of every object present in the store at that moment
(`media/manifests/<stamp>-run<id>.json.tink`). Restoring a manifest brings the store back to
that moment: each object is decrypted, its sha256 checked, and saved under its own name.
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
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.utils import timezone

from audit.services import Actor, audit_record

from ..crypto import AD_MANIFEST, ad_media_object
from ..destinations import READ_CHUNK, Destination, configured_destinations
from ..locking import backup_lock
from ..models import BackupRun
from ..pipeline import Progress, confirm_object, drain_into, open_plaintext, store_stream
from .database import SIDECAR_SUFFIX
from .runs import backup_run_fail, backup_run_start, backup_run_succeed, heartbeat
from .verify import run_destinations

logger = logging.getLogger(__name__)

OBJECTS = "media/objects/"
MANIFESTS = "media/manifests/"


def media_storage() -> Storage:
    return storages[settings.BACKUP_MEDIA_STORAGE]


def walk_storage(storage: Storage, prefix: str) -> Iterator[str]:
    """Every file name under `prefix`, through the storage API (works for disk and cloud)."""
    try:
        dirs, files = storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        yield f"{prefix}/{name}" if prefix else name
    for sub in dirs:
        yield from walk_storage(storage, f"{prefix}/{sub}" if prefix else sub)


def _chunks(storage: Storage, name: str, digest: Any) -> Iterator[bytes]:
    with storage.open(name, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
            yield chunk


def backup_media_run(
    *,
    trigger: str = BackupRun.Trigger.MANUAL,
    actor: Actor = None,
    progress: Progress | None = None,
) -> BackupRun:
    """Copy the document objects each destination lacks, then write this run's manifest.

    Succeeds only when every copied object and the manifest were confirmed at every
    destination; a failure removes the objects this run wrote that were not confirmed.
    """
    with backup_lock(wait_seconds=10):
        run = backup_run_start(kind=BackupRun.Kind.MEDIA, trigger=trigger, actor=actor)
        destinations: list[Destination] = []
        written: list[tuple[Destination, str]] = []
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
                present = {d.name: {k for k, _ in d.list(OBJECTS)} for d in destinations}
                entries: list[dict[str, Any]] = []
                copied = already = raw_total = 0
                names = [
                    n for p in settings.BACKUP_MEDIA_PREFIXES for n in walk_storage(storage, p)
                ]
                for name in sorted(names):
                    key = OBJECTS + name
                    missing = [d for d in destinations if key not in present[d.name]]
                    if not missing:
                        already += 1
                        entries.append({"name": name, "size": storage.size(name)})
                        continue
                    digest = hashlib.sha256()
                    stored = store_stream(
                        chunks=_chunks(storage, name, digest),
                        destinations=missing,
                        key=key,
                        associated_data=ad_media_object(name),
                        compress=False,  # documents are mostly PDFs and images: compressed
                    )
                    written.extend((d, key) for d in missing)
                    for destination in missing:
                        confirm_object(
                            destination=destination,
                            key=key,
                            size=stored.stored_size,
                            sha256=stored.sha256,
                        )
                    copied += 1
                    raw_total += stored.raw_size
                    if progress:
                        progress(1)
                    entries.append(
                        {"name": name, "size": stored.raw_size, "sha256": digest.hexdigest()}
                    )
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
            # Objects already confirmed are content-addressed and complete, so a later run
            # reuses them; only this run's manifest (and any partial) goes.
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


def media_restore(
    *, run: BackupRun, force: bool = False, actor: Actor = None, progress: Progress | None = None
) -> tuple[int, int]:
    """Put back every object of the run's manifest that the store lacks (or all, with
    `force`). Each object's sha256 is checked before it is saved. Returns (restored, skipped).
    """
    if run.kind != BackupRun.Kind.MEDIA or not run.is_restorable:
        raise ValueError(f"Backup #{run.pk} is not a finished media backup.")
    manifest = media_manifest_read(run)
    storage = media_storage()
    destination = run_destinations(run)[0][0]
    restored = skipped = 0
    for item in manifest["objects"]:
        name = item["name"]
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
        changes={"restored": restored, "skipped": skipped},
    )
    return restored, skipped


__all__ = ["SIDECAR_SUFFIX", "backup_media_run", "media_restore"]
