"""Slow-query capture: a database execute wrapper installed on every connection.

Every statement is timed (two `perf_counter()` calls) and counted for the current request or
task; nothing else happens below MONITORING_SLOW_QUERY_MS. A slower statement is normalised
into a fingerprint, given the route and the innermost project frames, and:

- inside a request or task: held on the scope and written when it ends (`scope_flush`);
- elsewhere (a command, a migration, a shell): written at once, or after the commit of the
  transaction it ran in (that transaction may hold locks the insert would wait for).

Records are written through the separate MONITORING_DB_ALIAS connection, in a transaction of
their own that waits at most a second for a lock: they survive when the caller's transaction
rolls back, never take part in it, and the wrapper skips that alias, so recording a slow query
can never record itself.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from .context import MAX_SLOW_QUERIES_PER_SCOPE, Scope, bounded_lock_wait, current_scope

logger = logging.getLogger(__name__)

MAX_STATEMENT_CHARS = 4000
STACK_FRAMES = 5

_recording: ContextVar[bool] = ContextVar("monitoring_recording_slow_query", default=False)

# --- normalisation ---------------------------------------------------------------------------
_STRING = re.compile(r"(?:[EeBbXxNn])?'(?:[^']|'')*'")
_DOLLAR_STRING = re.compile(r"\$(\w*)\$.*?\$\1\$", re.S)
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\$\d+|\?")
# A number that is not part of an identifier (t0, "col1", U2) nor of a quoted name.
_NUMBER = re.compile(r"(?<![\w\"$.])-?\b\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b(?![\w\"])")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.I)
_ARRAY = re.compile(r"\bARRAY\s*\[\s*\?(?:\s*,\s*\?)*\s*\]", re.I)
_VALUES = re.compile(r"\bVALUES\s*\([^()]*\)(?:\s*,\s*\([^()]*\))*", re.I)
_SAVEPOINT = re.compile(r'"s\d+_x\d+"')
_SPACES = re.compile(r"\s+")


def normalize_sql(sql: str) -> str:
    """The statement with every literal and parameter replaced by `?`, IN-lists, arrays and
    multi-row VALUES collapsed, and whitespace squeezed: the same query with other values
    (or another number of ids) reads the same."""
    text = _DOLLAR_STRING.sub("?", sql)
    text = _STRING.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _IN_LIST.sub("IN (...)", text)
    text = _ARRAY.sub("ARRAY[...]", text)
    text = _VALUES.sub("VALUES (...)", text)
    text = _SAVEPOINT.sub('"s?"', text)
    return _SPACES.sub(" ", text).strip()


def fingerprint(normalized: str) -> str:
    """16 hex digits (64 bits) of the normalised statement's SHA-1: short enough to index,
    long enough that two different queries never share one in practice."""
    return hashlib.sha1(normalized.encode(), usedforsecurity=False).hexdigest()[:16]


# --- the stack -------------------------------------------------------------------------------
def _project_root() -> str:
    return str(settings.BASE_DIR).rstrip("/") + "/"


def stack_summary(*, limit: int = STACK_FRAMES) -> str:
    """The innermost `limit` frames that belong to the project (not Django, not libraries,
    not this module), innermost first: `students/selectors.py:88 in dashboard_figures_get`."""
    root = _project_root()
    frames: list[str] = []
    frame = sys._getframe(1)
    while frame is not None and len(frames) < limit:
        filename = frame.f_code.co_filename
        if (
            filename.startswith(root)
            and "/site-packages/" not in filename
            and "/.venv/" not in filename
            and not filename.endswith(("monitoring/slow_queries.py", "monitoring/middleware.py"))
        ):
            frames.append(
                f"{filename.removeprefix(root)}:{frame.f_lineno} in {frame.f_code.co_name}"
            )
        frame = frame.f_back  # type: ignore[assignment]
    return "\n".join(frames)


# --- the wrapper -----------------------------------------------------------------------------
class QueryTimer:
    """`connection.execute_wrappers` entry: counts and times each statement."""

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        scope = current_scope.get()
        if scope is not None:
            scope.queries += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            threshold = settings.MONITORING_SLOW_QUERY_MS
            if threshold > 0 and elapsed_ms >= threshold:
                _on_slow_query(sql, elapsed_ms, context["connection"], scope)


QUERY_TIMER = QueryTimer()


def install(connection: BaseDatabaseWrapper) -> None:
    """Put the timer on a connection (the `connection_created` signal calls this).

    First in the list, so it is the outermost wrapper: `connection.execute_wrapper()` pops the
    *last* entry on exit, and a connection opened inside such a block must not lose ours.
    The pool reconnects the same wrapper object for every request, hence the membership test."""
    if QUERY_TIMER not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, QUERY_TIMER)


def _on_slow_query(
    sql: str, elapsed_ms: float, connection: BaseDatabaseWrapper, scope: Scope | None
) -> None:
    alias = settings.MONITORING_DB_ALIAS
    if connection.alias == alias or _recording.get():
        return  # our own writes: recording them would recurse
    from .metrics import SLOW_QUERIES

    SLOW_QUERIES.labels(route=scope.route if scope else "none").inc()
    rate = settings.MONITORING_SLOW_QUERY_SAMPLE_RATE
    if rate < 1.0 and random.random() >= rate:  # noqa: S311 - sampling, not security
        return
    normalized = normalize_sql(sql)[:MAX_STATEMENT_CHARS]
    record = {
        "recorded_at": timezone.now(),
        "fingerprint": fingerprint(normalized),
        "statement": normalized,
        "duration_ms": round(elapsed_ms, 3),
        "route": (scope.route if scope else _command_route())[:200],
        "stack": stack_summary(),
        "database": connection.alias[:50],
    }
    if scope is not None:
        if len(scope.slow_queries) < MAX_SLOW_QUERIES_PER_SCOPE:
            scope.slow_queries.append(record)
        else:
            scope.slow_queries_dropped += 1
        return
    if not connection.get_autocommit():
        # Inside a transaction that is not a request's or a task's (a migration, `flush`, a
        # command's atomic block), write once it has committed: it may hold locks our insert
        # would wait for on the other connection, forever (a TRUNCATE of every table does),
        # and on SQLite it holds the one write lock. A rollback loses this record; a manual
        # transaction (autocommit off outside any atomic block) offers no hook at all.
        if connection.in_atomic_block:
            transaction.on_commit(lambda: records_write([record]), using=connection.alias)
        return
    records_write([record])


def _command_route() -> str:
    """Outside a request or task: the management command or script that ran the query."""
    argv = sys.argv
    if len(argv) > 1 and argv[0].endswith("manage.py"):
        return f"command:{argv[1]}"
    return f"process:{argv[0].rsplit('/', 1)[-1]}" if argv and argv[0] else "process"


def records_write(records: list[dict[str, Any]]) -> None:
    """Insert slow-query records through the monitoring connection; never raises (losing a
    record must not fail the page or task that was merely slow)."""
    if not records:
        return
    alias = settings.MONITORING_DB_ALIAS
    if connections[alias].settings_dict["NAME"] != connections["default"].settings_dict["NAME"]:
        # Only while the test runner creates the test database: the monitoring alias still
        # names the real one, and nothing of a test run may land there.
        return
    from .models import SlowQuery

    token = _recording.set(True)
    try:
        with bounded_lock_wait(alias):
            SlowQuery.objects.using(alias).bulk_create([SlowQuery(**r) for r in records])
    except Exception:
        # Info, not warning: it happens exactly when the database is in trouble, which the
        # health checks and alerts report already.
        logger.info("Could not record %d slow queries", len(records), exc_info=True)
    finally:
        _recording.reset(token)


def scope_flush(scope: Scope) -> None:
    """Write the slow queries a finished request or task held back."""
    if scope.slow_queries_dropped:
        logger.warning(
            "%s ran %d more slow queries than recorded",
            scope.route,
            scope.slow_queries_dropped,
        )
    if scope.slow_queries:
        records, scope.slow_queries = scope.slow_queries, []
        records_write(records)
