"""Helpers for tests that run real processes: a clean environment and free ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connection

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_database_url() -> str:
    """The URL of the database this test runs against (the test database, not the real one)."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def child_maintenance_url() -> str:
    """The same database as the maintenance role (the tables' owner)."""
    from school_site.db import maintenance_settings

    s = maintenance_settings()
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment for a child Django process: this one's, minus test-only switches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "school_site.settings",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    if "DATABASE_URL" in overrides and "DATABASE_MAINTENANCE_URL" not in overrides:
        # A child given a database of its own is one role there, unless it is this test's
        # database: its maintenance role must never be this run's on another server.
        own = (
            connection.vendor == "postgresql" and overrides["DATABASE_URL"] == child_database_url()
        )
        env["DATABASE_MAINTENANCE_URL"] = child_maintenance_url() if own else ""
    return {k: v for k, v in env.items() if v is not None}


@contextlib.contextmanager
def running_worker(queue: str, log_path: Path, *extra: str) -> Iterator[subprocess.Popen]:
    """A real Celery worker consuming `queue` against this test's database, stopped on exit.

    Solo pool: one process, so a test's task runs where its log can be read."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                "celery",
                "-A",
                "school_site",
                "worker",
                "-Q",
                queue,
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--hostname",
                f"{queue}@%h",
                *extra,
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(
                DATABASE_URL=child_database_url(),
                DB_POOL="false",
                SCHOOLHOUSE_TESTING="true",
                CELERY_DEFAULT_QUEUE=queue,
            ),
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def maintenance_cursor() -> Iterator[Any]:
    """A cursor on the test database as the maintenance role (the tables' owner), in
    autocommit: for what the application's role may not do (create a table), as the
    operator's tools would."""
    import psycopg

    from backups.pipeline import pg_params
    from school_site.db import maintenance_settings

    with psycopg.connect(**pg_params(maintenance_settings()), autocommit=True) as conn:
        yield conn.cursor()
