"""What the current request or Celery task is, for the code that times its queries.

A `ContextVar` rather than a thread-local: it follows the code into `sync_to_async` and
`async_to_sync` hops, and a Celery task run eagerly inside a request gets its own scope and
hands the request's back when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction

# Slow queries held back until the scope ends; more than this in one request are only counted.
MAX_SLOW_QUERIES_PER_SCOPE = 20


@dataclass
class Scope:
    """One request or task: its route name, how many queries it ran, its slow queries."""

    route: str
    queries: int = 0
    slow_queries: list[dict[str, Any]] = field(default_factory=list)
    slow_queries_dropped: int = 0


current_scope: ContextVar[Scope | None] = ContextVar("monitoring_scope", default=None)


# Longest a monitoring write waits for a row or table lock before giving up (and dropping its
# figures). Long enough for the prune job's deletes, far shorter than a stuck request.
LOCK_WAIT = "1s"


@contextmanager
def bounded_lock_wait(alias: str) -> Iterator[None]:
    """A transaction on the monitoring connection whose statements give up on a lock after
    LOCK_WAIT (PostgreSQL's lock_timeout): a monitoring write must never wait indefinitely
    on a lock held elsewhere, least of all by the very request or command being measured."""
    with transaction.atomic(using=alias):
        connection = connections[alias]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
        yield
