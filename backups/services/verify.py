"""Verification: a backup that has not been restored is a hope, not a backup.

Every destination's copy is re-read and its size and sha256 checked; one copy is decrypted
and decompressed, `pg_restore --list` must read its table of contents, and a restore drill
loads it into a scratch database whose per-table row counts must equal the counts taken
inside the dump's own snapshot. The scratch database is always dropped.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from school_site.db import maintenance_settings

from ..crypto import AD_DATABASE, keyset_path
from ..destinations import Destination, destination_get, destination_spec
from ..locking import backup_lock
from ..models import BackupRun
from ..pipeline import (
    BackupFailed,
    Progress,
    pg_connect,
    pg_env,
    pg_params,
    pg_table_counts,
    sqlite_facts,
)
from ..stream import StreamChild
from .alerts import backup_failure_alert

logger = logging.getLogger(__name__)
Say = Callable[[str], None]


class VerificationFailed(Exception):
    """The backup could not be read back, decrypted or restored, or its rows differ."""


def run_destinations(run: BackupRun) -> list[tuple[Destination, dict[str, Any]]]:
    """The destinations holding this run's object (not pruned), configured from settings."""
    found = []
    for entry in run.destinations:
        if entry.get("pruned_at") or not entry.get("confirmed", True):
            continue
        with contextlib.suppress(Exception):
            found.append((destination_get(entry["name"]), entry))
    if not found:
        raise VerificationFailed(
            f"Backup #{run.pk} has no copy left at any configured destination."
        )
    return found


@contextlib.contextmanager
def scratch_database(params: dict[str, str], *, label: str) -> Iterator[dict[str, str]]:
    """A new, empty database with a unique name on the same server; dropped afterwards even
    if the drill fails."""
    name = f"{params.get('dbname', 'schoolhouse')[:30]}_{label}_{uuid.uuid4().hex[:10]}"
    admin = {**params, "dbname": "postgres"}
    from psycopg import sql

    with pg_connect(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield {**params, "dbname": name}
    finally:
        try:
            with pg_connect(admin) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        except Exception:
            logger.exception("could not drop the scratch database %s", name)


def pg_restore_stream(
    *,
    run_key_id: int | None,
    destination: Destination,
    key: str,
    size: int | None,
    sha256: str,
    args: list[str],
    env: dict[str, str],
    progress: Progress | None = None,
    check_whole_object: bool = True,
) -> str:
    """Feed the decrypted, decompressed dump to `pg_restore <args>` on its stdin (no copy on
    disk) and return its stdout. Raises VerificationFailed with pg_restore's own message.

    The download, decryption and pg_restore run in a streaming child without Django
    (`backups.stream`), so this process never loads the cloud SDK or holds a buffer."""
    with StreamChild() as child:
        answer = child.call(
            "restore",
            progress=progress,
            destination=destination_spec(destination.name),
            key=key,
            key_id=run_key_id,
            associated_data=AD_DATABASE.hex(),
            compressed=True,
            keyset=str(keyset_path()),
            size=size,
            sha256=sha256,
            check_whole_object=check_whole_object,
            sink={"kind": "command", "argv": [settings.BACKUP_PG_RESTORE, *args], "env": env},
        )
    if answer["returncode"] != 0:
        raise VerificationFailed(
            f"pg_restore {' '.join(args[:1])} failed ({answer['returncode']}): "
            f"{answer['stderr'][-2000:]}"
        )
    return str(answer["stdout"])


def plaintext_to_file(
    *, run: BackupRun, destination: Destination, key: str, path: Path, progress: Progress | None
) -> None:
    """Decrypt and decompress a backup object into `path` (fsynced), checking the stored
    object's size and sha256, in a streaming child (see `pg_restore_stream`)."""
    with StreamChild() as child:
        child.call(
            "restore",
            progress=progress,
            destination=destination_spec(destination.name),
            key=key,
            key_id=run.key_id,
            associated_data=AD_DATABASE.hex(),
            compressed=True,
            keyset=str(keyset_path()),
            size=run.stored_size,
            sha256=run.sha256,
            sink={"kind": "file", "path": str(path)},
        )


def object_checksum_in_child(destination: Destination, key: str) -> tuple[int, str]:
    """Size and sha256 of the object as the destination serves it, read by a streaming
    child."""
    with StreamChild() as child:
        answer = child.call("checksum", destination=destination_spec(destination.name), key=key)
    return int(answer["size"]), str(answer["sha256"])


def compare_counts(expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    problems = []
    for table, count in sorted(expected.items()):
        got = restored.get(table)
        if got != count:
            problems.append(f"{table}: {count} rows at dump time, {got} restored")
    return problems


def _verify_postgres(
    run: BackupRun, destination: Destination, report: dict[str, Any], progress: Progress | None
) -> None:
    params = pg_params(maintenance_settings())
    listing = pg_restore_stream(
        run_key_id=run.key_id,
        destination=destination,
        key=run.object_key,
        size=run.stored_size,
        sha256=run.sha256,
        args=["--list"],
        env=pg_env(params),
        check_whole_object=False,  # --list reads only the table of contents
    )
    report["toc_entries"] = sum(1 for line in listing.splitlines() if line and line[0] != ";")
    started = time.monotonic()
    with scratch_database(params, label="verify") as scratch:
        report["scratch_database"] = scratch["dbname"]
        pg_restore_stream(
            run_key_id=run.key_id,
            destination=destination,
            key=run.object_key,
            size=run.stored_size,
            sha256=run.sha256,
            args=["--no-owner", "--no-privileges", "--exit-on-error", "-d", scratch["dbname"]],
            env=pg_env(scratch),
            progress=progress,
        )
        restored = pg_table_counts(scratch)
    report["restore_seconds"] = round(time.monotonic() - started, 1)
    report["tables"] = len(run.row_counts)
    report["rows"] = sum(run.row_counts.values())
    problems = compare_counts(run.row_counts, restored)
    if problems:
        report["mismatches"] = problems
        raise VerificationFailed(
            "Row counts differ after the restore drill: " + "; ".join(problems[:10])
        )


def _verify_sqlite(
    run: BackupRun, destination: Destination, report: dict[str, Any], progress: Progress | None
) -> None:
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        path = Path(tmp) / "db.sqlite3"
        plaintext_to_file(
            run=run, destination=destination, key=run.object_key, path=path, progress=progress
        )
        conn = sqlite3.connect(path)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise VerificationFailed(f"SQLite integrity check: {result}")
            restored = sqlite_facts(conn).row_counts
        finally:
            conn.close()
    report["tables"] = len(run.row_counts)
    report["rows"] = sum(run.row_counts.values())
    problems = compare_counts(run.row_counts, restored)
    if problems:
        report["mismatches"] = problems
        raise VerificationFailed(
            "Row counts differ in the restored copy: " + "; ".join(problems[:10])
        )


def backup_verify(
    *, run: BackupRun, actor: Actor = None, progress: Progress | None = None
) -> BackupRun:
    """Verify one database backup end to end and record the result on the run.

    The run becomes `verified` when every check passes; otherwise its verification is
    `failed`, the report says why, and administrators are alerted.
    """
    if run.kind != BackupRun.Kind.DATABASE or not run.is_restorable:
        raise VerificationFailed(f"Backup #{run.pk} is not a finished database backup.")
    with backup_lock("verification", wait_seconds=10):
        BackupRun.objects.filter(pk=run.pk).update(verification=BackupRun.Verification.RUNNING)
        started = time.monotonic()
        report: dict[str, Any] = {"started_at": timezone.now().isoformat(), "destinations": {}}
        try:
            copies = run_destinations(run)
            for destination, entry in copies:
                size, sha = object_checksum_in_child(
                    destination, entry.get("key") or run.object_key
                )
                ok = size == run.stored_size and sha == run.sha256
                report["destinations"][destination.name] = {"size": size, "sha256_ok": ok}
                if not ok:
                    raise VerificationFailed(
                        f"{destination.name}: the stored object is {size} bytes with a different "
                        f"checksum than recorded ({run.stored_size} bytes): corrupted or truncated."
                    )
            destination = copies[0][0]
            if run.engine == "postgresql":
                _verify_postgres(run, destination, report, progress)
            else:
                _verify_sqlite(run, destination, report, progress)
        except Exception as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            report["seconds"] = round(time.monotonic() - started, 1)
            with transaction.atomic():
                run.verification = BackupRun.Verification.FAILED
                run.verified_at = timezone.now()
                run.verification_report = report
                run.save(update_fields=["verification", "verified_at", "verification_report"])
                audit_record(actor=actor, action="backup_verify_fail", target=run)
            backup_failure_alert(
                run=run, summary=f"Verification of backup #{run.pk} failed", detail=report["error"]
            )
            return run
        report["seconds"] = round(time.monotonic() - started, 1)
        with transaction.atomic():
            run.status = BackupRun.Status.VERIFIED
            run.verification = BackupRun.Verification.PASSED
            run.verified_at = timezone.now()
            run.verification_report = report
            run.save(update_fields=["status", "verification", "verified_at", "verification_report"])
            audit_record(actor=actor, action="backup_verify", target=run)
        return run


def latest_database_run() -> BackupRun | None:
    return (
        BackupRun.objects.database()
        .restorable()
        .filter(pruned_at__isnull=True)
        .exclude(verification=BackupRun.Verification.FAILED)
        .order_by("-started_at", "-pk")
        .first()
    )


__all__ = ["BackupFailed", "VerificationFailed", "backup_verify", "latest_database_run"]
