"""Move an embedded (SQLite) installation onto PostgreSQL, fast and verifiably.

How it stays fast: SQLite itself renders every row as one line of PostgreSQL's COPY text
format (the column expressions are built per Django field type), Python only passes those
lines on in large chunks, and PostgreSQL loads them with COPY through psycopg 3.

How it stays safe:
- the SQLite file is first copied with SQLite's online backup API; the copy is migrated to
  this code's schema and read from, so the original is never touched;
- everything on the target runs in one transaction: a failure leaves it exactly as it was;
- each table's canonical COPY text is hashed as it is sent, and hashed again as PostgreSQL
  returns it (`COPY ... TO STDOUT`, ordered by primary key): equal row counts and equal
  SHA-256 digests mean PostgreSQL holds exactly what the SQLite file held;
- rows PostgreSQL rejects (bad UTF-8, constraint violations, overlong values, dangling
  foreign keys) are each reported with their table and primary key.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import math
import queue
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from django.apps import apps
from django.core.management import call_command
from django.db import DatabaseError, connections, models, transaction

CHUNK_ROWS = 20_000
# COPY goes through the psycopg cursor itself, whose errors are not Django's.
DB_ERRORS = (DatabaseError, psycopg.Error)
# Rows Django's own migrations create on an empty target; the source's versions replace them.
BOOKKEEPING_TABLES = {
    "django_content_type",
    "auth_permission",
    "auth_group",
    "auth_group_permissions",
}
NULL = "\\N"

# --------------------------------------------------------------------------------------------
# Per-column rendering in PostgreSQL's canonical COPY text form
# --------------------------------------------------------------------------------------------
INTEGER_TYPES = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}
TEXT_TYPES = {
    "CharField",
    "TextField",
    "SlugField",
    "EmailField",
    "URLField",
    "FilePathField",
    "FileField",
    "ImageField",
}


def _sql_text(col: str) -> str:
    # The escapes PostgreSQL's COPY TO emits, so what we send equals what it returns. Most
    # values contain none of those characters: one GLOB scan spares them seven replace()s.
    expr = f"replace({col}, '\\', '\\\\')"
    for char, escape in (
        (9, "\\t"),
        (10, "\\n"),
        (13, "\\r"),
        (8, "\\b"),
        (12, "\\f"),
        (11, "\\v"),
    ):
        expr = f"replace({expr}, char({char}), '{escape}')"
    special = "'*[' || char(92, 9, 10, 13, 8, 12, 11) || ']*'"
    return f"(CASE WHEN {col} GLOB {special} THEN {expr} ELSE {col} END)"


def _sql_fraction_trimmed(col: str) -> str:
    # PostgreSQL prints fractional seconds without trailing zeros.
    return f"(CASE WHEN instr({col}, '.') > 0 THEN rtrim(rtrim({col}, '0'), '.') ELSE {col} END)"


def sql_expression(field: models.Field, col: str) -> str | None:
    """SQLite SQL that renders the column as PostgreSQL would print it, or None when only
    Python can (JSON, floats, binary, intervals, addresses)."""
    kind = field.get_internal_type()
    if isinstance(field, models.ForeignKey):
        kind = field.target_field.get_internal_type()
        if kind in {"AutoField", "BigAutoField", "SmallAutoField"}:
            kind = "IntegerField"
    if kind in INTEGER_TYPES:
        expr = f"CAST({col} AS TEXT)"
    elif kind == "BooleanField":
        expr = f"(CASE WHEN {col} THEN 't' ELSE 'f' END)"
    elif kind in TEXT_TYPES:
        expr = _sql_text(col)
    elif kind == "DateField":
        expr = col
    elif kind == "DateTimeField":
        expr = f"({_sql_fraction_trimmed(col)} || '+00')"
    elif kind == "TimeField":
        expr = _sql_fraction_trimmed(col)
    elif kind == "DecimalField":
        expr = f"printf('%.{field.decimal_places}f', {col})"  # type: ignore[attr-defined]
    elif kind == "UUIDField":
        expr = (
            f"lower(substr({col},1,8)||'-'||substr({col},9,4)||'-'||substr({col},13,4)||'-'"
            f"||substr({col},17,4)||'-'||substr({col},21,12))"
        )
    else:
        return None
    return f"(CASE WHEN {col} IS NULL THEN '\\N' ELSE {expr} END)"


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\b", "\\b")
        .replace("\f", "\\f")
        .replace("\v", "\\v")
    )


def _interval(microseconds: int) -> str:
    days, rest = divmod(int(microseconds), 86_400_000_000)
    seconds, micro = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}" + (f".{micro:06d}".rstrip("0"))
    if not days:
        return clock
    return f"{days} day{'s' if abs(days) != 1 else ''} {clock}"


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def python_renderer(field: models.Field) -> Callable[[Any], str]:
    """Render one SQLite value as PostgreSQL's COPY text (for the columns SQL cannot do)."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        return lambda v: _escape(v if isinstance(v, str) else json.dumps(v))
    if kind == "FloatField":
        return _float
    if kind == "BinaryField":
        return lambda v: "\\\\x" + bytes(v).hex()
    if kind == "DurationField":
        return _interval
    if kind == "GenericIPAddressField":
        return lambda v: ipaddress.ip_address(v).compressed
    if kind == "BooleanField":
        return lambda v: "t" if v else "f"
    if kind == "DateTimeField":
        return lambda v: str(v).rstrip("0").rstrip(".") + "+00" if "." in str(v) else f"{v}+00"
    if kind == "DecimalField":
        places = field.decimal_places  # type: ignore[attr-defined]
        return lambda v: f"{float(v):.{places}f}"
    return lambda v: _escape(str(v))


def json_canonical(text: str) -> str:
    """JSON compared by meaning: PostgreSQL's jsonb reorders keys and respaces."""
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def _unescape(text: str) -> str:
    out, i = [], 0
    mapping = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "\\": "\\"}
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(mapping.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
@dataclass
class TablePlan:
    table: str
    pk: str
    fields: list[models.Field]
    pk_is_text: bool
    json_columns: list[int]  # positions compared by meaning, not by text
    python_columns: dict[int, Callable[[Any], str]]
    sequence: bool

    @property
    def columns(self) -> list[str]:
        return [str(f.column) for f in self.fields]

    def quoted_columns(self) -> str:
        return ", ".join(f'"{c}"' for c in self.columns)


def table_plans() -> list[TablePlan]:
    """Every table of every installed app (auto-created many-to-many tables too), parents
    before children, so the copy order follows the foreign keys."""
    by_table: dict[str, type[models.Model]] = {}
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.managed and not meta.proxy and not meta.swapped:
            by_table.setdefault(meta.db_table, model)
    order: list[str] = []
    seen: set[str] = set()

    def visit(table: str, path: tuple[str, ...] = ()) -> None:
        if table in seen or table in path:
            return  # cycles are fine: PostgreSQL checks Django's foreign keys at commit
        for f in by_table[table]._meta.local_concrete_fields:
            if f.remote_field is not None and f.related_model is not None:
                parent = f.related_model._meta.db_table  # type: ignore[union-attr]
                if parent in by_table and parent != table:
                    visit(parent, (*path, table))
        seen.add(table)
        order.append(table)

    for table in sorted(by_table):
        visit(table)
    plans = []
    for table in order:
        meta = by_table[table]._meta
        fields = list(meta.local_concrete_fields)
        pk = meta.pk
        python_columns = {
            i: python_renderer(f) for i, f in enumerate(fields) if sql_expression(f, "x") is None
        }
        plans.append(
            TablePlan(
                table=table,
                pk=str(pk.column),  # type: ignore[union-attr]
                fields=fields,
                pk_is_text=pk.get_internal_type() in TEXT_TYPES,  # type: ignore[union-attr]
                json_columns=[
                    i for i, f in enumerate(fields) if f.get_internal_type() == "JSONField"
                ],
                python_columns=python_columns,
                sequence=pk.get_internal_type() in {"AutoField", "BigAutoField", "SmallAutoField"},  # type: ignore[union-attr]
            )
        )
    return plans


# --------------------------------------------------------------------------------------------
# Reading the source
# --------------------------------------------------------------------------------------------
def source_lines(src: sqlite3.Connection, plan: TablePlan) -> Iterator[list[str]]:
    """The table's rows as COPY text lines, in primary-key order, a chunk at a time."""
    if not plan.python_columns:
        line = " || char(9) || ".join(sql_expression(f, f'"{f.column}"') or "" for f in plan.fields)
        cursor = src.execute(f'SELECT {line} || char(10) FROM "{plan.table}" ORDER BY "{plan.pk}"')
        while chunk := cursor.fetchmany(CHUNK_ROWS):
            yield [row[0] for row in chunk]
        return
    # Mixed table: SQLite renders what it can, Python the rest.
    exprs = [
        f'"{f.column}"' if i in plan.python_columns else (sql_expression(f, f'"{f.column}"') or "")
        for i, f in enumerate(plan.fields)
    ]
    cursor = src.execute(f'SELECT {", ".join(exprs)} FROM "{plan.table}" ORDER BY "{plan.pk}"')
    renderers = plan.python_columns
    while chunk := cursor.fetchmany(CHUNK_ROWS):
        lines = []
        for row in chunk:
            cells = [
                NULL
                if (i in renderers and value is None)
                else renderers[i](value)
                if i in renderers
                else value
                for i, value in enumerate(row)
            ]
            lines.append("\t".join(cells) + "\n")
        yield lines


def comparable(plan: TablePlan, line: str) -> str:
    """A COPY line with its JSON cells in a canonical form (identity for most tables)."""
    if not plan.json_columns:
        return line
    cells = line.rstrip("\n").split("\t")
    for i in plan.json_columns:
        if cells[i] != NULL:
            cells[i] = _escape(json_canonical(_unescape(cells[i])))
    return "\t".join(cells) + "\n"


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------
@dataclass
class RejectedRow:
    table: str
    pk: str
    reason: str


@dataclass
class TableResult:
    table: str
    source_rows: int = 0
    target_rows: int = 0
    source_sha256: str = ""
    target_sha256: str = ""
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256


@dataclass
class MigrationReport:
    sqlite_path: str
    backup_path: str | None
    database: str
    dry_run: bool
    tables: list[TableResult] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    committed: bool = False
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.source_rows for t in self.tables)

    @property
    def verified(self) -> bool:
        return not self.rejected and all(t.verified for t in self.tables)


class MigrationRefused(Exception):
    """Nothing was changed; the message says why and what to do."""


class MigrationFailed(Exception):
    """The target was left as it was; `report.rejected` names the rows PostgreSQL refused."""

    def __init__(self, message: str, report: MigrationReport) -> None:
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------------------------
# The migration
# --------------------------------------------------------------------------------------------
class Progress:
    """Callbacks the command turns into progress bars; the service stays UI-free."""

    def table_started(self, table: str, rows: int) -> None: ...
    def rows_copied(self, count: int) -> None: ...
    def table_finished(self, result: TableResult) -> None: ...
    def stage(self, message: str) -> None: ...


def _register_sqlite_alias(alias: str, path: Path) -> None:
    config = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.dummy"}, alias: config}
    )  # fills in the defaults of `config`
    connections.settings[alias] = config


def _drop_alias(alias: str) -> None:
    if alias in connections.settings:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


def sqlite_snapshot(*, sqlite_path: Path, into: Path) -> Path:
    """A consistent copy of a live SQLite database (online backup API, no lock held long)."""
    if not sqlite_path.is_file():
        raise MigrationRefused(f"{sqlite_path} does not exist or is not a file.")
    try:
        source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise MigrationRefused(f"{sqlite_path} is not a SQLite database: {exc}") from exc
    target = sqlite3.connect(into)
    with target:
        source.backup(target)
    source.close()
    target.close()
    return into


def _target_has_data(alias: str, plans: list[TablePlan]) -> list[str]:
    with connections[alias].cursor() as cursor:
        busy = []
        for plan in plans:
            if plan.table in BOOKKEEPING_TABLES:
                continue
            cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{plan.table}")')
            if cursor.fetchone()[0]:
                busy.append(plan.table)
        return busy


def sqlite_migrate_to_postgres(
    *,
    sqlite_path: Path,
    database: str = "default",
    dry_run: bool = False,
    truncate: bool = False,
    backup_dir: Path | None = None,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy every table of the SQLite installation at `sqlite_path` into the PostgreSQL
    database `database` (an alias of DATABASES), verify it, and commit — or change nothing.

    Raises MigrationRefused before touching anything (no such file, target not PostgreSQL,
    target holds data without `truncate`), MigrationFailed after rolling back.
    """
    progress = progress or Progress()
    started = time.monotonic()
    target = connections[database]
    if target.vendor != "postgresql":
        raise MigrationRefused(f"The database {database!r} is {target.vendor}, not PostgreSQL.")
    sqlite_path = Path(sqlite_path).resolve()

    workdir = Path(tempfile.mkdtemp(prefix="sqlite-upgrade-"))
    alias = f"sqlite_upgrade_{id(workdir)}"
    backup_path: Path | None = None
    try:
        progress.stage("Copying the SQLite database (online backup)")
        snapshot = sqlite_snapshot(sqlite_path=sqlite_path, into=workdir / "snapshot.sqlite3")
        if not dry_run:
            # The untouched copy an operator can go back to.
            stamp = datetime.datetime.now(tz=datetime.UTC).strftime("%Y%m%d-%H%M%S")
            folder = backup_dir or sqlite_path.parent
            folder.mkdir(parents=True, exist_ok=True)
            backup_path = folder / f"{sqlite_path.stem}.before-postgres-{stamp}.sqlite3"
            shutil.copyfile(snapshot, backup_path)

        progress.stage("Bringing the copy up to this version's schema")
        _register_sqlite_alias(alias, snapshot)
        try:
            call_command("migrate", database=alias, interactive=False, verbosity=0)
        finally:
            _drop_alias(alias)
        report = MigrationReport(
            sqlite_path=str(sqlite_path),
            backup_path=str(backup_path) if backup_path else None,
            database=database,
            dry_run=dry_run,
        )
        src = sqlite3.connect(snapshot)
        try:
            _copy_all(
                snapshot=snapshot,
                src=src,
                database=database,
                report=report,
                progress=progress,
                dry_run=dry_run,
                truncate=truncate,
            )
        finally:
            src.close()
        report.seconds = time.monotonic() - started
        return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _Rollback(Exception):
    pass


def _copy_all(
    *,
    snapshot: Path,
    src: sqlite3.Connection,
    database: str,
    report: MigrationReport,
    progress: Progress,
    dry_run: bool,
    truncate: bool,
) -> None:
    connection = connections[database]
    try:
        # One transaction from the schema to the last check: PostgreSQL's DDL is
        # transactional, so a failure leaves the target exactly as it was, schema included.
        with transaction.atomic(using=database):
            progress.stage("Creating the schema on PostgreSQL")
            call_command("migrate", database=database, interactive=False, verbosity=0)
            with connection.cursor() as cursor:
                existing = set(connection.introspection.table_names(cursor))
            plans = [p for p in table_plans() if p.table in existing]
            busy = _target_has_data(database, plans)
            if busy and not truncate:
                raise MigrationRefused(
                    f"The target database already holds data ({', '.join(busy[:5])}"
                    f"{' and more' if len(busy) > 5 else ''}). Nothing was changed. Re-run "
                    "with --truncate to replace its contents with the SQLite data."
                )
            with connection.cursor() as django_cursor:
                cursor = django_cursor.cursor  # the psycopg cursor, for COPY
                cursor.execute("SET LOCAL TimeZone = 'UTC'")
                cursor.execute("SET LOCAL DateStyle = 'ISO, YMD'")
                cursor.execute("SET LOCAL extra_float_digits = 1")
                cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                # The rows migrate just wrote (content types, permissions, roles) leave
                # deferred checks pending, and TRUNCATE refuses tables with pending checks.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
                tables = ", ".join(f'"{p.table}"' for p in plans)
                cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
                dropped: list[str] = []
                foreign_keys = _drop_foreign_keys(cursor, [p.table for p in plans])
                progress.stage(f"Copying {len(plans)} tables")
                for plan in plans:
                    report.tables.append(
                        _copy_table(snapshot, src, cursor, plan, report, progress, dropped)
                    )
                if report.rejected:
                    raise _Rollback
                progress.stage(f"Rebuilding {len(dropped)} indexes")
                for definition in dropped:
                    cursor.execute(definition)
                progress.stage(f"Restoring and checking {len(foreign_keys)} foreign keys")
                try:
                    with transaction.atomic(using=database):
                        # Each ADD CONSTRAINT validates with one set-based join, far faster
                        # than a deferred trigger per row.
                        for table, definition in foreign_keys:
                            cursor.execute(f"ALTER TABLE {table} ADD {definition}")
                except DB_ERRORS:
                    report.rejected.extend(_dangling_references(cursor, plans))
                    if not report.rejected:
                        raise
                    raise _Rollback from None
                for plan in plans:
                    if plan.sequence:
                        cursor.execute(
                            "SELECT setval(pg_get_serial_sequence(%s, %s), "
                            f'COALESCE(MAX("{plan.pk}"), 1), MAX("{plan.pk}") IS NOT NULL) '
                            f'FROM "{plan.table}"',
                            (f'"{plan.table}"', plan.pk),
                        )
                progress.stage("Verifying row counts and checksums")
                for plan, result in zip(plans, report.tables, strict=True):
                    _verify_table(cursor, plan, result)
                if not report.verified:
                    bad = [t.table for t in report.tables if not t.verified]
                    raise MigrationFailed(
                        f"Verification failed for {', '.join(bad)}; nothing was changed.", report
                    )
                if dry_run:
                    raise _Rollback
        report.committed = True
    except _Rollback:
        if report.rejected:
            raise MigrationFailed(
                f"PostgreSQL rejected {len(report.rejected)} row(s); nothing was changed.",
                report,
            ) from None


def _rendered_blocks(snapshot: Path, plan: TablePlan) -> Iterator[tuple[int, bytes, bytes]]:
    """(rows, COPY bytes, bytes to hash) per chunk, rendered on a thread of its own: SQLite
    releases the GIL while it steps, so rendering overlaps with sending to PostgreSQL."""
    results: queue.Queue[tuple[int, bytes, bytes] | BaseException | None] = queue.Queue(4)

    def produce() -> None:
        src = sqlite3.connect(snapshot)
        try:
            for lines in source_lines(src, plan):
                block = "".join(lines).encode()
                hashed = (
                    "".join(comparable(plan, line) for line in lines).encode()
                    if plan.json_columns
                    else block
                )
                results.put((len(lines), block, hashed))
            results.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            results.put(exc)
        finally:
            src.close()

    worker = threading.Thread(target=produce, name=f"render-{plan.table}", daemon=True)
    worker.start()
    try:
        while (item := results.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Unblock and wait for the producer even when the consumer stops early.
        while worker.is_alive():
            try:
                results.get_nowait()
            except queue.Empty:
                worker.join(0.01)


def _drop_foreign_keys(cursor: Any, tables: list[str]) -> list[tuple[str, str]]:
    """Drop the foreign keys of the loaded tables for the load; returns what re-adds them."""
    cursor.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])",
        ([f'"{t}"' for t in tables],),
    )
    found = cursor.fetchall()
    for table, name, _definition in found:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    return [(table, f'CONSTRAINT "{name}" {definition}') for table, name, definition in found]


def _plain_indexes(cursor: Any, table: str) -> list[tuple[str, str]]:
    """Indexes that back no constraint: dropped for the load and rebuilt after, which is far
    faster than maintaining them row by row (primary keys and unique constraints stay)."""
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        (f'"{table}"',),
    )
    return list(cursor.fetchall())


def _copy_table(
    snapshot: Path,
    src: sqlite3.Connection,
    cursor: Any,
    plan: TablePlan,
    report: MigrationReport,
    progress: Progress,
    dropped: list[str],
) -> TableResult:
    result = TableResult(table=plan.table)
    started = time.monotonic()
    try:
        total = src.execute(f'SELECT count(*) FROM "{plan.table}"').fetchone()[0]
    except sqlite3.OperationalError:
        total = 0  # the table is new in this version: nothing to copy
        progress.table_started(plan.table, 0)
        progress.table_finished(result)
        return result
    progress.table_started(plan.table, total)
    digest = hashlib.sha256()
    savepoint = f"copy_{len(report.tables)}"
    cursor.execute(f"SAVEPOINT {savepoint}")
    indexes = _plain_indexes(cursor, plan.table) if total > 10_000 else []
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    try:
        with cursor.copy(f'COPY "{plan.table}" ({plan.quoted_columns()}) FROM STDIN') as copy:
            for rows, block, hashed in _rendered_blocks(snapshot, plan):
                copy.write(block)
                digest.update(hashed)
                result.source_rows += rows
                progress.rows_copied(rows)
        dropped.extend(definition for _name, definition in indexes)
    except (*DB_ERRORS, sqlite3.Error, UnicodeError, ValueError) as exc:
        cursor.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")  # the indexes come back too
        report.rejected.extend(_diagnose(src, cursor, plan, exc))
    result.source_sha256 = digest.hexdigest()
    result.seconds = time.monotonic() - started
    progress.table_finished(result)
    return result


def _verify_table(cursor: Any, plan: TablePlan, result: TableResult) -> None:
    digest = hashlib.sha256()
    rows = 0
    order = f'"{plan.pk}" COLLATE "C"' if plan.pk_is_text else f'"{plan.pk}"'
    query = f'COPY (SELECT {plan.quoted_columns()} FROM "{plan.table}" ORDER BY {order}) TO STDOUT'
    if plan.json_columns:
        pending = b""
        with cursor.copy(query) as copy:
            for data in copy:
                pending += bytes(data)
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    digest.update(comparable(plan, raw.decode() + "\n").encode())
                    rows += 1
    else:
        with cursor.copy(query) as copy:
            for data in copy:
                chunk = bytes(data)
                digest.update(chunk)
                rows += chunk.count(b"\n")
    result.target_rows = rows
    result.target_sha256 = digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Finding every rejected row (the slow path, taken only after a failure)
# --------------------------------------------------------------------------------------------
def _diagnose(
    src: sqlite3.Connection, cursor: Any, plan: TablePlan, first_error: Exception
) -> list[RejectedRow]:
    """Name every row of the table that the decoder or PostgreSQL refuses.

    Rows are rendered one by one in Python (so bad UTF-8 is pinned to its row), sent in
    chunks each under a savepoint, and only a failing chunk is retried row by row.
    """
    rejected: list[RejectedRow] = []
    renderers = {i: python_renderer(f) for i, f in enumerate(plan.fields)}
    cols = ", ".join(f'"{c}"' for c in plan.columns)
    copy_sql = f'COPY "{plan.table}" ({cols}) FROM STDIN'
    binary = {i for i, f in enumerate(plan.fields) if f.get_internal_type() == "BinaryField"}
    savepoints = iter(range(10**9))

    def send(lines: list[tuple[str, str]]) -> bool:
        name = f"diag_{next(savepoints)}"
        cursor.execute(f"SAVEPOINT {name}")
        try:
            with cursor.copy(copy_sql) as copy:
                copy.write("".join(line for _pk, line in lines))
        except DB_ERRORS as exc:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            if len(lines) == 1:
                rejected.append(RejectedRow(plan.table, lines[0][0], str(exc).splitlines()[0]))
            return False
        cursor.execute(f"RELEASE SAVEPOINT {name}")
        return True

    def flush(lines: list[tuple[str, str]]) -> None:
        if lines and not send(lines):
            for one in lines:
                send([one])

    src.text_factory = bytes
    try:
        rows = src.execute(f'SELECT {cols} FROM "{plan.table}" ORDER BY "{plan.pk}"')
        pk_index = plan.columns.index(plan.pk)
        pending: list[tuple[str, str]] = []
        for row in rows:
            raw_pk = row[pk_index]
            shown_pk = raw_pk.decode(errors="replace") if isinstance(raw_pk, bytes) else str(raw_pk)
            try:
                cells = []
                for i, value in enumerate(row):
                    if value is None:
                        cells.append(NULL)
                        continue
                    if isinstance(value, bytes) and i not in binary:
                        try:
                            value = value.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            raise ValueError(
                                f"column {plan.columns[i]} is not valid UTF-8 (byte {exc.start}: "
                                f"{value[exc.start : exc.start + 4]!r})"
                            ) from None
                    cells.append(renderers[i](value))
            except (ValueError, TypeError) as exc:
                rejected.append(RejectedRow(plan.table, shown_pk, str(exc)))
                continue
            pending.append((shown_pk, "\t".join(cells) + "\n"))
            if len(pending) >= 2000:
                flush(pending)
                pending = []
        flush(pending)
    finally:
        src.text_factory = str
    if not rejected:  # the failure was not about any single row
        rejected.append(RejectedRow(plan.table, "?", str(first_error).splitlines()[0]))
    return rejected


def _dangling_references(cursor: Any, plans: list[TablePlan]) -> list[RejectedRow]:
    """Rows whose foreign key points at nothing: SQLite does not enforce them, PostgreSQL does."""
    rejected = []
    tables = {p.table for p in plans}
    for plan in plans:
        for f in plan.fields:
            if not isinstance(f, models.ForeignKey):
                continue
            parent = f.related_model._meta.db_table  # type: ignore[union-attr]
            if parent not in tables:
                continue
            parent_col = f.target_field.column
            cursor.execute(
                f'SELECT c."{plan.pk}", c."{f.column}" FROM "{plan.table}" c '
                f'LEFT JOIN "{parent}" p ON p."{parent_col}" = c."{f.column}" '
                f'WHERE c."{f.column}" IS NOT NULL AND p."{parent_col}" IS NULL LIMIT 1000'
            )
            for pk, value in cursor.fetchall():
                rejected.append(
                    RejectedRow(
                        plan.table, str(pk), f"{f.column}={value} points at no row of {parent}"
                    )
                )
    return rejected
