"""One backup at a time, across every worker and host.

PostgreSQL: a session-level advisory lock held on a dedicated connection (not one from
Django's pool, which would hand it to another request). The server releases it the moment
that connection ends, so a worker killed with SIGKILL cannot leave a stale lock behind, and
the reaper can tell "a backup is running" from "a run row says running but nobody is".
SQLite (embedded mode, one host): an exclusive `flock` on a file, released by the kernel when
the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

from school_site.db import maintenance_settings

from .pipeline import pg_connect, pg_params


class BackupBusy(Exception):
    """Another backup (or verification) holds the lock."""


def _lock_id(name: str) -> int:
    # A stable signed 64-bit id per lock name and database: advisory locks are server-wide,
    # and two deployments (or test databases) on one server must not block each other.
    database = maintenance_settings()["NAME"]
    digest = hashlib.sha256(f"schoolhouse.backups.{database}.{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _pg_lock(name: str) -> Iterator[bool]:
    # The maintenance role: the lock's connection must work whatever row-level security
    # the application role is bound by.
    conn: Any = pg_connect(pg_params(maintenance_settings()))
    try:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", [_lock_id(name)]).fetchone()[0]
        yield bool(got)
    finally:
        conn.close()  # ends the session, which releases the lock


@contextlib.contextmanager
def _file_lock(name: str) -> Iterator[bool]:
    path = Path(settings.VAR_DIR) / f"backups-{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _try(name: str) -> contextlib.AbstractContextManager[bool]:
    if connections["default"].vendor == "postgresql":
        return _pg_lock(name)
    return _file_lock(name)


@contextlib.contextmanager
def backup_lock(name: str = "backup", *, wait_seconds: float = 0) -> Iterator[None]:
    """Hold the named lock for the block, or raise BackupBusy after `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with _try(name) as acquired:
            if acquired:
                yield
                return
        if time.monotonic() >= deadline:
            raise BackupBusy(
                "Another backup is running (the backup lock is held); try again when it ends."
                if name == "backup"
                else f"Another {name} is running; try again when it ends."
            )
        time.sleep(0.5)


def lock_is_free(name: str = "backup") -> bool:
    """True when nobody holds the lock right now (it is taken and released at once)."""
    with _try(name) as acquired:
        return acquired
