"""Helpers for tests that run real processes: a clean environment and free ports."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

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
    return {k: v for k, v in env.items() if v is not None}
