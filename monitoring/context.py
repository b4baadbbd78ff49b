"""What the current request or Celery task is, for the code that times its queries.

A `ContextVar` rather than a thread-local: it follows the code into `sync_to_async` and
`async_to_sync` hops, and a Celery task run eagerly inside a request gets its own scope and
hands the request's back when it ends.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

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
