"""Fixtures for the monitoring tests: quiet defaults, a dead cache, the backups contract, a
loopback webhook receiver."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import free_port

# Checks use the monitoring alias (its own connection to the same test database).
BOTH_DATABASES = ["default", "monitoring"]
PUBLIC_ADDRESS = "203.0.113.7"  # TEST-NET-3: never on the allowlist


@pytest.fixture(autouse=True)
def _monitoring_defaults(settings) -> Iterator[None]:
    """No surprise flushes of request figures in the middle of a test, a short Celery ping,
    and no state carried over from another test in this process."""
    from monitoring import request_stats
    from monitoring.checks import migrations_cache_clear
    from monitoring.services import _memory_open

    settings.MONITORING_REQUEST_FLUSH_SECONDS = 10**9
    settings.MONITORING_REQUEST_FLUSH_REQUESTS = 10**9
    settings.MONITORING_CELERY_PING_TIMEOUT = 0.2
    settings.MONITORING_CPU_SAMPLE_SECONDS = 0.05
    settings.ADMINS = [("Ops", "ops@example.org")]
    request_stats.BUFFER.clear()
    migrations_cache_clear()
    _memory_open.clear()
    yield
    request_stats.BUFFER.clear()


@pytest.fixture
def dead_cache(settings) -> int:
    """The cache pointed at a port nothing listens on (the shared Redis is left alone)."""
    port = free_port()
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
            },
        }
    }
    from django.core.cache import cache

    assert cache.set("probe", 1) is None and cache.get("probe") is None  # really unreachable
    return port


@pytest.fixture
def backups_contract(monkeypatch) -> Callable[..., types.ModuleType]:
    """Stand in for `backups.selectors` with the given public functions (the backups app is
    written in parallel; its module must not decide these tests)."""

    def install(**functions: Any) -> types.ModuleType:
        module = types.ModuleType("backups.selectors")
        for name, function in functions.items():
            setattr(module, name, function)
        monkeypatch.setitem(sys.modules, "backups.selectors", module)
        return module

    return install


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        self.received.append(
            {
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "body": json.loads(self.rfile.read(length)),
            }
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook(settings) -> Iterator[list[dict[str, Any]]]:
    """A tiny HTTP server on a free loopback port; yields the list of POSTs it received."""
    received: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)  # the OS picks a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.MONITORING_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    settings.MONITORING_ALERT_WEBHOOK_TIMEOUT = 5.0
    yield received
    server.shutdown()
    server.server_close()
