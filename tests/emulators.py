"""Real HTTP endpoints for the cloud stores, shared by every test that needs one: moto's S3
server and gcp-storage-emulator, each started once per test process on a free loopback port.
Tests make a fresh bucket of their own; nothing patches the storage clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import free_port

S3_KEY = "testing"
S3_SECRET = "testing-secret"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
