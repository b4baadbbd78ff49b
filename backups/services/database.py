"""The database backup: dump → zstd → Tink → every destination, confirmed by re-reading.

This process keeps the lock, the run's row, the dump's snapshot and the row counts; the
bytes move in a child process without Django (`backups.stream`), so that neither process
carries the other's memory: see that module.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from audit.services import Actor
from school_site.db import maintenance_settings

from ..crypto import AD_DATABASE, keyset_path
from ..destinations import Destination, destination_spec
from ..locking import backup_lock
from ..models import BackupRun
from ..pipeline import PostgresDump, Progress, SqliteDump
from ..stream import StreamChild
from .runs import backup_run_fail, backup_run_start, backup_run_succeed, heartbeat

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"


def database_object_key(*, run: BackupRun, engine: str, db_name: str) -> str:
    stamp = run.started_at.astimezone(datetime.UTC)
    ext = "dump" if engine == "postgresql" else "sqlite3"
    base = db_name.rsplit("/", 1)[-1].removesuffix(".sqlite3") or "db"
    return f"database/{stamp:%Y/%m/%d}/{base}-{stamp:%Y%m%dT%H%M%SZ}-run{run.pk}.{ext}.zst.tink"


def sidecar(run: BackupRun) -> dict[str, Any]:
    """What a restore needs to know when the database (and so this row) is gone: written in
    clear beside the object. It holds no school data, only sizes, checksums and schema facts."""
    return {
        "format": "schoolhouse-backup/1",
        "run_id": run.pk,
        "kind": run.kind,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "object_key": run.object_key,
        "compression": "zstd",
        "encryption": "tink-streaming-aead/AES256_GCM_HKDF_1MB",
        "key_id": run.key_id,
        "raw_size": run.raw_size,
        "stored_size": run.stored_size,
        "sha256": run.sha256,
        "engine": run.engine,
        "server_version": run.server_version,
        "migrations": run.migrations,
        "schema_hash": run.schema_hash,
        "row_counts": run.row_counts,
    }


def delete_run_objects(run: BackupRun, destinations: list[Destination] | None = None) -> None:
    """Remove whatever a failed or dead run left: finished objects, sidecars, partial files
    and unfinished multipart uploads. Best effort per destination; errors are logged."""
    if not run.object_key:
        return
    by_name = {d.name: d for d in destinations or []}
    for entry in run.destinations or [{"name": n} for n in settings.BACKUP_DESTINATIONS]:
        try:
            destination = by_name.get(entry["name"])
            if destination is None:
                from ..destinations import destination_get

                destination = destination_get(entry["name"])
            key = entry.get("key") or run.object_key
            destination.remove_partials(key)
            destination.delete(key)
            destination.delete(key + SIDECAR_SUFFIX)
        except Exception:
            logger.warning("could not clean %s of run %s", entry.get("name"), run.pk, exc_info=True)


def _delete_run_objects_in_child(run: BackupRun, specs: list[dict[str, Any]]) -> None:
    """`delete_run_objects`, done by a streaming child so that this process does not import
    a cloud SDK just to clean up; in process if even that child fails."""
    if not run.object_key:
        return
    try:
        with StreamChild() as child:
            errors = child.call(
                "cleanup",
                destinations=specs,
                key=run.object_key,
                delete=[run.object_key, run.object_key + SIDECAR_SUFFIX],
            )
        for error in errors:
            logger.warning("could not clean %s of run %s", error, run.pk)
    except Exception:
        logger.warning(
            "cleanup child failed for run %s; cleaning in process", run.pk, exc_info=True
        )
        delete_run_objects(run)


def backup_database_run(
    *,
    trigger: str = BackupRun.Trigger.MANUAL,
    actor: Actor = None,
    progress: Progress | None = None,
) -> BackupRun:
    """Dump the database to every configured destination and confirm each copy.

    Returns the run: `succeeded` only after every destination served back an object of the
    recorded size and sha256; otherwise `failed`, with the error recorded, every partial or
    unconfirmed object removed, and the administrators alerted. Raises BackupBusy when
    another backup holds the lock (nothing is recorded then).
    """
    with backup_lock(wait_seconds=10):
        run = backup_run_start(kind=BackupRun.Kind.DATABASE, trigger=trigger, actor=actor)
        specs: list[dict[str, Any]] = []
        try:
            with heartbeat(run):
                # pg_dump as the maintenance role (the tables' owner): under the
                # application role row-level security would hide every school's rows.
                db = maintenance_settings()
                engine = "postgresql" if connections["default"].vendor == "postgresql" else "sqlite"
                specs = [destination_spec(name) for name in settings.BACKUP_DESTINATIONS]
                run.object_key = database_object_key(
                    run=run, engine=engine, db_name=str(db["NAME"])
                )
                run.engine = engine
                # Recorded before the first byte is written, so a reaper can find the leftovers
                # of a worker that dies mid-way.
                run.destinations = [
                    {"name": spec["name"], "key": run.object_key, "confirmed": False}
                    for spec in specs
                ]
                run.save(update_fields=["object_key", "engine", "destinations"])
                source = PostgresDump(db) if engine == "postgresql" else SqliteDump(db)
                with source, StreamChild() as child:
                    # Dump, compress, encrypt, hash, write everywhere, commit, then re-read
                    # every copy and compare its size and sha256: all in the child.
                    stored = child.call(
                        "store",
                        progress=progress,
                        source=source.source,
                        destinations=specs,
                        key=run.object_key,
                        associated_data=AD_DATABASE.hex(),
                        compress=True,
                        zstd_level=settings.BACKUP_ZSTD_LEVEL,
                        zstd_threads=settings.BACKUP_ZSTD_THREADS,
                        keyset=str(keyset_path()),
                    )
                    logger.info(
                        "backup run %s: dumped and stored in %.1f s, confirmed in %.1f s",
                        run.pk,
                        stored["seconds"]["stream"],
                        stored["seconds"]["confirm"],
                    )
                    facts = source.wait_facts()
                    confirmed_at = timezone.now().isoformat()
                    run.destinations = [
                        {
                            "name": spec["name"],
                            "key": run.object_key,
                            "size": stored["stored_size"],
                            "sha256": stored["sha256"],
                            "confirmed": True,
                            "confirmed_at": confirmed_at,
                        }
                        for spec in specs
                    ]
                    run.raw_size = stored["raw_size"]
                    run.stored_size = stored["stored_size"]
                    run.sha256 = stored["sha256"]
                    run.key_id = stored["key_id"]
                    run.server_version = facts.server_version
                    run.migrations = facts.migrations
                    run.schema_hash = facts.schema_hash
                    run.row_counts = facts.row_counts
                    run.finished_at = timezone.now()
                    child.call(
                        "put",
                        destinations=specs,
                        key=run.object_key + SIDECAR_SUFFIX,
                        data=json.dumps(sidecar(run), indent=1),
                    )
                return backup_run_succeed(
                    run=run,
                    destinations=run.destinations,
                    raw_size=run.raw_size,
                    stored_size=run.stored_size,
                    sha256=run.sha256,
                    key_id=run.key_id,
                    server_version=run.server_version,
                    migrations=run.migrations,
                    schema_hash=run.schema_hash,
                    row_counts=run.row_counts,
                )
        except Exception as exc:
            _delete_run_objects_in_child(run, specs)
            return backup_run_fail(run=run, error=f"{type(exc).__name__}: {exc}")
        except BaseException as exc:  # interrupted (Ctrl-C, time limit): clean up, then stop
            with contextlib.suppress(Exception):
                _delete_run_objects_in_child(run, specs)
                backup_run_fail(run=run, error=f"interrupted: {type(exc).__name__}")
            raise
