"""An hourly media increment asks the cloud only about what is new: the requests it sends to
the document store and the backup bucket do not grow with the documents already backed up.

Requests are counted on the real HTTP traffic to moto's S3 server: botocore's `before-send`
event fires once per HTTP request a client sends (retries included). Registering a handler
observes the clients; nothing is patched."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from backups.destinations import destination_get
from backups.models import BackupRun
from backups.services import backup_media_run
from files.models import StoredObject
from tests.backups.conftest import s3_client
from tests.files.conftest import s3_storage_config

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def s3_documents(settings, moto_endpoint, local_backups) -> Any:
    """Documents in one moto bucket, backups in another: the production shape."""
    documents_bucket = f"documents-{uuid.uuid4().hex[:12]}"
    backups_bucket = f"backups-{uuid.uuid4().hex[:12]}"
    for bucket in (documents_bucket, backups_bucket):
        s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "documents": s3_storage_config(moto_endpoint, documents_bucket),
    }
    settings.BACKUP_MEDIA_STORAGE = "documents"
    settings.BACKUP_DESTINATIONS = ["s3"]
    settings.BACKUP_S3_BUCKET = backups_bucket
    settings.BACKUP_S3_ENDPOINT_URL = moto_endpoint
    settings.BACKUP_S3_REGION = "us-east-1"
    settings.BACKUP_S3_ACCESS_KEY_ID = "testing"
    settings.BACKUP_S3_SECRET_ACCESS_KEY = "testing-secret"
    settings.BACKUP_S3_PREFIX = "backups/"
    return storages["documents"]


def add_documents(storage: Any, count: int, *, start: int = 0) -> list[str]:
    """`count` objects in the store under their content address, each with its row (as an
    upload leaves them)."""
    keys = []
    for i in range(start, start + count):
        content = f"scanned consent form {i}".encode() * 50
        digest = hashlib.sha256(content).hexdigest()
        key = f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"
        assert storage.save(key, ContentFile(content)) == key
        StoredObject.objects.create(key=key, sha256=digest, size=len(content))
        keys.append(key)
    return keys


class RequestLog:
    """Every HTTP request the observed clients send, as "METHOD bucket-relative-path"."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, request: Any, **kwargs: Any) -> None:
        self.requests.append(f"{request.method} {request.url.split('?')[0].split('/', 3)[-1]}")


@pytest.fixture
def request_log(s3_documents) -> Iterator[RequestLog]:
    log = RequestLog()
    clients = [s3_documents.connection.meta.client, destination_get("s3").client]
    for client in clients:
        client.meta.events.register("before-send.s3", log)
    yield log
    for client in clients:
        client.meta.events.unregister("before-send.s3", log)


def increment_requests(log: RequestLog) -> list[str]:
    log.requests.clear()
    run = backup_media_run()
    assert run.status == BackupRun.Status.SUCCEEDED, run.error
    return list(log.requests)


@pytest.mark.parametrize("documents", [5, 25])
def test_an_increment_asks_only_about_new_objects(s3_documents, request_log, documents) -> None:
    old = add_documents(s3_documents, documents)
    increment_requests(request_log)  # the first run copies everything
    quiet = increment_requests(request_log)  # nothing new since
    (new,) = add_documents(s3_documents, 1, start=documents)
    one_new = increment_requests(request_log)

    # A quiet hour: the manifest's upload (start, part, complete) and its re-read, nothing
    # about any document (before the record: 22 requests for 5 documents, 81 for 25).
    assert len(quiet) == 4, quiet
    assert not [r for r in quiet if "sha256/" in r]
    # One new document: its own requests (is a copy there? read it, upload it, re-read it)
    # and the manifest's; none about the documents already backed up (before: 31 and 90).
    assert len(one_new) <= 4 + 8, one_new
    assert not [r for r in one_new if any(key in r for key in old)]
    assert [r for r in one_new if f"backups/media/objects/{new}" in r]
