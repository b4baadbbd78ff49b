"""The streaming machinery: dump sources, compress → encrypt → hash → fan out to every
destination, and the reverse path for verification and restore.

Nothing here holds a whole dump in memory or writes a temporary copy of it: data moves in
1 MiB chunks from `pg_dump`'s stdout through zstd (python-zstandard, multithreaded in C
outside the GIL) and Tink's encrypting stream into each destination's writer. Memory is
bounded by zstd's window and worker buffers, Tink's 1 MiB segment, and one upload part per
remote destination.

This module does not need Django at import time: the commands run the byte-moving part in
a child process (`backups.stream`) that never sets up Django, and which imports this module,
`crypto` and `destinations` only. Settings are read lazily where a caller gives no value.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import zstandard

from .crypto import BackupIntegrityError, decrypting_stream, encrypting_stream
from .destinations import READ_CHUNK, Destination, ObjectWriter

Progress = Callable[[int], None]


class BackupFailed(Exception):
    """A step of the pipeline failed; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
class _FanOut(io.RawIOBase):
    """The sink Tink writes ciphertext into: hashes it and hands every chunk to each
    destination's writer. Closing it (Tink closes it at the end of the stream) does not
    commit anything; the caller commits only once everything upstream finished cleanly."""

    def __init__(self, writers: list[ObjectWriter]) -> None:
        super().__init__()
        self.writers = writers
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    error: BaseException | None = None

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sha256.update(chunk)
        self.size += len(chunk)
        try:
            for writer in self.writers:
                writer.write(chunk)
        except BaseException as exc:
            # Tink calls this from C++ and reports any error as a bare TinkError; keep the
            # real one so the run records "s3: …" rather than "write failed".
            self.error = exc
            raise
        return len(chunk)


@dataclass
class StoredObject:
    key: str
    raw_size: int
    stored_size: int
    sha256: str
    key_id: int
    destinations: list[str] = field(default_factory=list)


def store_stream(
    *,
    chunks: Iterable[bytes],
    destinations: list[Destination],
    key: str,
    associated_data: bytes,
    compress: bool,
    progress: Progress | None = None,
    zstd_level: int | None = None,
    zstd_threads: int | None = None,
    keyset: Path | None = None,
) -> StoredObject:
    """Compress (optionally), encrypt and write `chunks` to every destination at once, then
    commit each object. On any failure every writer is aborted and every object already
    committed is deleted, so no destination keeps a partial or orphaned object.

    `zstd_level`, `zstd_threads` and `keyset` default to BACKUP_ZSTD_LEVEL,
    BACKUP_ZSTD_THREADS and BACKUP_KEYSET_PATH."""
    if compress and (zstd_level is None or zstd_threads is None):
        from django.conf import settings

        zstd_level = settings.BACKUP_ZSTD_LEVEL if zstd_level is None else zstd_level
        zstd_threads = settings.BACKUP_ZSTD_THREADS if zstd_threads is None else zstd_threads
    writers: list[tuple[Destination, ObjectWriter]] = []
    committed: list[Destination] = []
    fan: _FanOut | None = None
    try:
        for destination in destinations:
            writers.append((destination, destination.open_writer(key)))
        fan = _FanOut([w for _, w in writers])
        encrypted, key_id = encrypting_stream(fan, associated_data=associated_data, path=keyset)  # type: ignore[arg-type]
        sink: IO[bytes]
        if compress:
            compressor = zstandard.ZstdCompressor(level=zstd_level or 1, threads=zstd_threads or 0)
            sink = compressor.stream_writer(encrypted, closefd=True)  # type: ignore[assignment]
        else:
            sink = encrypted
        raw = 0
        for chunk in chunks:
            sink.write(chunk)
            raw += len(chunk)
            if progress:
                progress(len(chunk))
        sink.close()  # ends the zstd frame, then Tink's last segment
        for destination, writer in writers:
            writer.commit()
            committed.append(destination)
    except BaseException as exc:
        for destination, writer in writers:
            if destination not in committed:
                writer.abort()
        for destination in committed:
            with contextlib.suppress(Exception):
                destination.delete(key)
        if fan is not None and fan.error is not None and fan.error is not exc:
            raise fan.error from exc
        raise
    return StoredObject(
        key=key,
        raw_size=raw,
        stored_size=fan.size,
        sha256=fan.sha256.hexdigest(),
        key_id=key_id,
        destinations=[d.name for d in destinations],
    )


def object_checksum(
    destination: Destination, key: str, progress: Progress | None = None
) -> tuple[int, str]:
    """Size and sha256 of the object as the destination serves it (a full re-read)."""
    digest = hashlib.sha256()
    size = 0
    with contextlib.closing(destination.open_reader(key)) as reader:
        while chunk := reader.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return size, digest.hexdigest()


def confirm_object(*, destination: Destination, key: str, size: int, sha256: str) -> None:
    """Re-read the object from the destination; raise unless size and sha256 match."""
    got_size, got_sha = object_checksum(destination, key)
    if got_size != size or got_sha != sha256:
        raise BackupIntegrityError(
            f"{destination.name}: {key} reads back as {got_size} bytes sha256 {got_sha[:16]}…, "
            f"expected {size} bytes sha256 {sha256[:16]}…"
        )


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
class HashingReader(io.RawIOBase):
    """Passes reads through while counting and hashing them."""

    def __init__(self, source: BinaryIO, progress: Progress | None = None) -> None:
        super().__init__()
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        if self.progress and n:
            self.progress(n)
        return n

    def close(self) -> None:
        self.source.close()
        super().close()


@contextlib.contextmanager
def open_plaintext(
    *,
    destination: Destination,
    key: str,
    associated_data: bytes,
    key_id: int | None,
    compressed: bool,
    progress: Progress | None = None,
    keyset: Path | None = None,
) -> Iterator[tuple[BinaryIO, HashingReader]]:
    """A reader of the decrypted (and decompressed) object, plus the hashing reader of the
    stored bytes underneath, whose sha256 is complete once the plaintext is read to its end."""
    hashing = HashingReader(destination.open_reader(key), progress)
    buffered = io.BufferedReader(hashing, buffer_size=READ_CHUNK)
    plain: BinaryIO = decrypting_stream(
        buffered,  # type: ignore[arg-type]
        associated_data=associated_data,
        key_id=key_id,
        path=keyset,
    )
    if compressed:
        plain = zstandard.ZstdDecompressor().stream_reader(plain, read_size=READ_CHUNK)  # type: ignore[assignment]
    try:
        yield plain, hashing
    finally:
        with contextlib.suppress(Exception):
            plain.close()
        with contextlib.suppress(Exception):
            hashing.close()


def drain_into(reader: BinaryIO, sink: BinaryIO) -> int:
    """Copy reader to sink in chunks; a closed pipe (the consumer stopped early) ends it."""
    total = 0
    while chunk := reader.read(READ_CHUNK):
        try:
            sink.write(chunk)
        except BrokenPipeError:
            break
        total += len(chunk)
    return total


def check_checksum(hashing: HashingReader, *, size: int | None, sha256: str) -> None:
    """After a full read: the stored bytes must be exactly those recorded at backup time."""
    # The decrypting stream stops at Tink's final segment; anything after it must be drained
    # (there should be nothing) for the hash to cover the whole object.
    while hashing.read(READ_CHUNK):
        pass
    if (size is not None and hashing.size != size) or hashing.sha256.hexdigest() != sha256:
        raise BackupIntegrityError(
            f"The object read back is {hashing.size} bytes with sha256 "
            f"{hashing.sha256.hexdigest()[:16]}…; the backup recorded {size} bytes and "
            f"{sha256[:16]}…: it is corrupted or truncated."
        )


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
def pg_params(db: dict[str, Any], *, name: str | None = None) -> dict[str, str]:
    """libpq connection parameters from a Django DATABASES entry."""
    options = db.get("OPTIONS", {})
    params = {
        "host": db.get("HOST") or "",
        "port": str(db.get("PORT") or ""),
        "user": db.get("USER") or "",
        "password": db.get("PASSWORD") or "",
        "dbname": name or db["NAME"],
    }
    for opt in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if options.get(opt):
            params[opt] = str(options[opt])
    return {k: v for k, v in params.items() if v}


def pg_env(params: dict[str, str]) -> dict[str, str]:
    """Environment for pg_dump / pg_restore: the password never appears on a command line."""
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "sslcert": "PGSSLCERT",
        "sslkey": "PGSSLKEY",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({names[k]: v for k, v in params.items()})
    return env


def pg_connect(params: dict[str, str], *, autocommit: bool = True) -> Any:
    import psycopg

    return psycopg.connect(**params, autocommit=autocommit, connect_timeout=15)  # type: ignore[arg-type]


@dataclass
class DumpFacts:
    """What the dump's own snapshot said: exact row counts, migrations, schema, version."""

    engine: str
    server_version: str = ""
    row_counts: dict[str, int] = field(default_factory=dict)
    migrations: dict[str, list[str]] = field(default_factory=dict)
    schema_hash: str = ""


def _pg_facts(cursor: Any) -> DumpFacts:
    facts = DumpFacts(engine="postgresql")
    facts.server_version = cursor.execute("SHOW server_version").fetchone()[0]
    tables = cursor.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
        ORDER BY 1, 2
        """
    ).fetchall()
    from psycopg import sql

    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        label = table if schema == "public" else f"{schema}.{table}"
        facts.row_counts[label] = cursor.execute(query).fetchone()[0]
    if "django_migrations" in facts.row_counts:
        for app, name in cursor.execute("SELECT app, name FROM django_migrations ORDER BY 1, 2"):
            facts.migrations.setdefault(app, []).append(name)
    schema_rows = cursor.execute(
        """
        SELECT table_schema, table_name, column_name, data_type, is_nullable,
               coalesce(column_default, '')
        FROM information_schema.columns
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
        UNION ALL
        SELECT n.nspname, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid),
               '', ''
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        ORDER BY 1, 2, 3, 4
        """
    ).fetchall()
    facts.schema_hash = hashlib.sha256(json.dumps(schema_rows).encode()).hexdigest()
    return facts


def command_chunks(argv: list[str], env: dict[str, str] | None = None) -> Iterator[bytes]:
    """The stdout of `argv` (pg_dump), chunk by chunk; raises BackupFailed with the command's
    own message when it exits non-zero. Closing the generator early kills the command."""
    with tempfile.TemporaryFile() as stderr:  # the command's messages only
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)  # noqa: S603
        stdout = cast(IO[bytes], proc.stdout)
        try:
            while chunk := stdout.read(READ_CHUNK):
                yield chunk
            code = proc.wait()
            if code != 0:
                stderr.seek(0)
                message = stderr.read()[-2000:].decode(errors="replace").strip()
                raise BackupFailed(f"{Path(argv[0]).name} exited with status {code}: {message}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stdout.close()


def file_chunks(path: str | Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            yield chunk


def source_chunks(source: dict[str, Any]) -> Iterator[bytes]:
    """The chunks a source spec names: {"kind": "command", "argv": [...], "env": {...}} or
    {"kind": "file", "path": ...} (what `PostgresDump.source` and `SqliteDump.source` give)."""
    if source["kind"] == "command":
        return command_chunks(source["argv"], source.get("env"))
    if source["kind"] == "file":
        return file_chunks(source["path"])
    raise BackupFailed(f"Unknown dump source {source['kind']!r}")


class PostgresDump:
    """`pg_dump -Fc -Z0` of a snapshot exported from a REPEATABLE READ transaction in which
    the rows are counted, so the dump and the counts describe the same instant.

    The transaction stays open (and so the snapshot valid) for the whole `with` block; the
    rows are counted in a thread meanwhile. `source` is the pg_dump command, to run here
    (`chunks()`) or in the streaming child; `wait_facts()` returns the counts.
    """

    def __init__(self, db: dict[str, Any]) -> None:
        self.params = pg_params(db)
        self.facts = DumpFacts(engine="postgresql")
        self.source: dict[str, Any] = {}
        self._conn: Any = None
        self._facts_thread: threading.Thread | None = None
        self._facts_error: BaseException | None = None

    def __enter__(self) -> PostgresDump:
        import psycopg
        from django.conf import settings

        self._conn = pg_connect(self.params, autocommit=False)
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._conn.read_only = True
        snapshot = self._conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        self.source = {
            "kind": "command",
            "argv": [
                settings.BACKUP_PG_DUMP,
                "--format=custom",
                # zstd compresses better and on every core; zlib inside pg_dump would be the
                # single-threaded bottleneck.
                "--compress=0",
                f"--snapshot={snapshot}",
                "--no-password",
            ],
            "env": pg_env(self.params),
        }
        # Counting 10 M rows takes a second: do it beside the dump, inside the same snapshot.
        self._facts_thread = threading.Thread(target=self._collect_facts, daemon=True)
        self._facts_thread.start()
        return self

    def _collect_facts(self) -> None:
        try:
            self.facts = _pg_facts(self._conn.cursor())
        except BaseException as exc:
            self._facts_error = exc

    def chunks(self) -> Iterator[bytes]:
        if not self.source:
            raise BackupFailed("PostgresDump.chunks() outside its `with` block")
        yield from command_chunks(self.source["argv"], self.source["env"])
        self.wait_facts()

    def wait_facts(self) -> DumpFacts:
        if self._facts_thread is None:
            raise BackupFailed("PostgresDump.wait_facts() outside its `with` block")
        self._facts_thread.join()
        if self._facts_error is not None:
            raise BackupFailed(f"Counting rows in the dump's snapshot failed: {self._facts_error}")
        return self.facts

    def __exit__(self, *exc: object) -> None:
        if self._facts_thread is not None:
            self._facts_thread.join(timeout=30)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()


class SqliteDump:
    """Embedded mode: SQLite's online backup API copies a consistent image to a temporary
    file beside the database (it is on local disk already), which then goes through the same
    compress/encrypt/hash/write pipeline."""

    def __init__(self, db: dict[str, Any]) -> None:
        self.path = Path(db["NAME"])
        self.facts = DumpFacts(engine="sqlite", server_version=sqlite3.sqlite_version)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.copy: Path | None = None

    def __enter__(self) -> SqliteDump:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="backup-", dir=self.path.parent)
        self.copy = Path(self._tmpdir.name) / "db.sqlite3"
        source = sqlite3.connect(self.path)
        target = sqlite3.connect(self.copy)
        try:
            source.backup(target, pages=4096)
        finally:
            source.close()
        try:
            self.facts = sqlite_facts(target)
        finally:
            target.close()
        return self

    @property
    def source(self) -> dict[str, Any]:
        if self.copy is None:
            raise BackupFailed("SqliteDump.source outside its `with` block")
        return {"kind": "file", "path": str(self.copy)}

    def chunks(self) -> Iterator[bytes]:
        return file_chunks(self.source["path"])

    def wait_facts(self) -> DumpFacts:
        return self.facts

    def __exit__(self, *exc: object) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()


def sqlite_facts(conn: sqlite3.Connection) -> DumpFacts:
    facts = DumpFacts(engine="sqlite", server_version=sqlite3.sqlite_version)
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    for name, _sql in rows:
        quoted = name.replace('"', '""')
        facts.row_counts[name] = conn.execute(f'SELECT count(*) FROM "{quoted}"').fetchone()[0]  # noqa: S608
    if "django_migrations" in facts.row_counts:
        for app, mig in conn.execute("SELECT app, name FROM django_migrations ORDER BY 1, 2"):
            facts.migrations.setdefault(app, []).append(mig)
    schema = conn.execute(
        "SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY 1, 2"
    ).fetchall()
    facts.schema_hash = hashlib.sha256(json.dumps(schema).encode()).hexdigest()
    return facts


def pg_table_counts(params: dict[str, str]) -> dict[str, int]:
    """Exact row counts of every table of a database (a restored copy, for comparison)."""
    with pg_connect(params) as conn:
        return _pg_facts(conn.cursor()).row_counts
