"""Backup fixtures: a keyset and destinations of the test's own (a local folder, a fresh
bucket on moto's S3 server and on gcp-storage-emulator, both real HTTP servers on free
loopback ports)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.emulators import REGION, S3_KEY, S3_SECRET  # noqa: F401  (used below)


@pytest.fixture
def keyset(settings, tmp_path) -> Path:
    from backups.crypto import keyset_create

    settings.BACKUP_KEYSET_PATH = tmp_path / "keys" / "backup-keyset.json"
    keyset_create()
    return settings.BACKUP_KEYSET_PATH


@pytest.fixture
def local_backups(settings, tmp_path, keyset) -> Path:
    settings.BACKUP_LOCAL_DIR = tmp_path / "backups"
    settings.BACKUP_DESTINATIONS = ["local"]
    settings.BACKUP_HEARTBEAT_SECONDS = 0.5
    settings.BACKUP_HEARTBEAT_TIMEOUT = 60
    return settings.BACKUP_LOCAL_DIR


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name=REGION,
    )


def gcs_client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="schoolhouse-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


@dataclass
class Clouds:
    s3_endpoint: str
    s3_bucket: str
    gcs_endpoint: str
    gcs_bucket: str

    def s3_keys(self) -> set[str]:
        page = s3_client(self.s3_endpoint).list_objects_v2(Bucket=self.s3_bucket)
        return {o["Key"] for o in page.get("Contents", [])}

    def s3_uploads(self) -> list[dict[str, Any]]:
        answer = s3_client(self.s3_endpoint).list_multipart_uploads(Bucket=self.s3_bucket)
        return list(answer.get("Uploads", []))

    def gcs_keys(self) -> set[str]:
        return {b.name for b in gcs_client(self.gcs_endpoint).list_blobs(self.gcs_bucket)}


def cloud_settings(settings, clouds: Clouds) -> None:
    settings.BACKUP_S3_BUCKET = clouds.s3_bucket
    settings.BACKUP_S3_ENDPOINT_URL = clouds.s3_endpoint
    settings.BACKUP_S3_REGION = REGION
    settings.BACKUP_S3_ACCESS_KEY_ID = S3_KEY
    settings.BACKUP_S3_SECRET_ACCESS_KEY = S3_SECRET
    settings.BACKUP_S3_PREFIX = "backups/"
    settings.BACKUP_GCS_BUCKET = clouds.gcs_bucket
    settings.BACKUP_GCS_ENDPOINT_URL = clouds.gcs_endpoint
    settings.BACKUP_GCS_PROJECT = "schoolhouse-test"
    settings.BACKUP_GCS_PREFIX = "backups/"
    settings.BACKUP_GCS_CHUNK_SIZE = 256 * 1024


@pytest.fixture
def clouds(settings, local_backups, moto_endpoint, gcs_endpoint) -> Clouds:
    """Every destination at once: local + S3 + GCS, each bucket new for this test."""
    found = Clouds(
        s3_endpoint=moto_endpoint,
        s3_bucket=f"backups-{uuid.uuid4().hex[:12]}",
        gcs_endpoint=gcs_endpoint,
        gcs_bucket=f"backups-{uuid.uuid4().hex[:12]}",
    )
    s3_client(found.s3_endpoint).create_bucket(Bucket=found.s3_bucket)
    gcs_client(found.gcs_endpoint).create_bucket(found.gcs_bucket)
    cloud_settings(settings, found)
    settings.BACKUP_DESTINATIONS = ["local", "s3", "gcs"]
    return found


def table_digests(params: dict[str, str], *, skip: set[str]) -> dict[str, str]:
    """md5 of every table's rows, in a stable order, for comparing two databases."""
    from backups.pipeline import pg_connect

    with pg_connect(params) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        digests = {}
        for table in tables:
            if table in skip:
                continue
            digests[table] = conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), '')) "  # noqa: S608
                f'FROM "{table}" t'
            ).fetchone()[0]
    return digests


def live_params() -> dict[str, str]:
    """libpq parameters of the database this test runs against, as the maintenance role (the
    tables' owner) that backups use: every school's rows, and the right to create databases."""
    from backups.pipeline import pg_params
    from school_site.db import maintenance_settings

    return pg_params(maintenance_settings())


def pg_url(params: dict[str, str]) -> str:
    return (
        f"postgres://{params['user']}:{params.get('password', '')}@{params['host']}:"
        f"{params['port']}/{params['dbname']}"
    )


def webhook_recorder(posted: list[dict[str, Any]]) -> str:
    """A real HTTP endpoint on a free loopback port that records the JSON it is sent (one
    request)."""
    import http.server
    import json
    import threading

    from tests.helpers import free_port

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    return f"http://127.0.0.1:{port}/hook"
