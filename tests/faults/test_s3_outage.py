"""The S3 endpoint dies (SIGKILL of our own moto_server) during a document upload, during a
backup, and while a hybrid-mode copy is owed: a clear error, nothing half-stored, and the
Celery copy retried with growing delays until the endpoint is back.

moto keeps its buckets in memory, so a restarted endpoint is empty: the "nothing
half-stored" checks read our own rows and local leftovers, which is where a half-finished
write would show."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from backups.models import BackupRun
from files.models import Document, DocumentVersion, StoredObject
from tests.emulators import REGION, S3_KEY, S3_SECRET
from tests.faults.conftest import StaffClient, running_gunicorn, school_digests, wait_for
from tests.files.factories import pdf_bytes
from tests.helpers import child_database_url, running_worker
from tests.students.factories import PASSWORD

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.xdist_group("faults"),
    pytest.mark.django_db(transaction=True),
]

ENDPOINT_DOWN = "could not be reached or refused the request"


def big_pdf(path, megabytes: int) -> None:
    """A PDF (by its magic bytes) padded with incompressible bytes."""
    head, tail = pdf_bytes("fault test").split(b"trailer")
    with open(path, "wb") as out:
        for piece in (head, b"%", os.urandom(megabytes << 20), b"\ntrailer", tail):
            out.write(piece)


def s3_documents(moto, bucket: str) -> dict:
    return {
        "BACKEND": "files.storage.DocumentS3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": moto.endpoint,
            "access_key": S3_KEY,
            "secret_key": S3_SECRET,
            "region_name": REGION,
            "location": "documents",
            "default_acl": None,
            "file_overwrite": False,
            "addressing_style": "path",
            # The production defaults (settings.DOCUMENTS_CLOUD_*): bounded, a few attempts.
            "connect_timeout": 5,
            "read_timeout": 120,
            "max_attempts": 3,
        },
    }


def upload(client, student, path):
    with open(path, "rb") as fh:
        return client.post(
            f"/students/{student.pk}/documents/new/",
            {"title": "Scanned file", "category": "enrollment", "file": fh},
        )


@pytest.mark.django_db  # in-process only: the quicker rollback-per-test mode
def test_document_upload_fails_cleanly_when_s3_dies_mid_transfer(
    world, throwaway_moto, settings, tmp_path, client
):
    bucket = f"docs-{uuid.uuid4().hex[:12]}"
    throwaway_moto.client().create_bucket(Bucket=bucket)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    settings.DOCUMENTS_SCANNER = ""
    stores = {k: v for k, v in settings.STORAGES.items() if k != "documents_replica"}
    settings.STORAGES = {**stores, "documents": s3_documents(throwaway_moto, bucket)}
    pdf = tmp_path / "scan.pdf"
    big_pdf(pdf, 32)  # multipart: four 8 MiB parts
    client.force_login(world.registrar)
    student = world.students[0]

    killer = throwaway_moto.kill_when(lambda: throwaway_moto.uploads_in_progress(bucket))
    answer = upload(client, student, pdf)
    killer.join(timeout=60)

    assert throwaway_moto.proc.poll() is not None, "the upload ended before moto was killed"
    assert answer.status_code == 200  # the form again, with the reason
    assert ENDPOINT_DOWN in answer.content.decode() and "Nothing was saved" in (
        answer.content.decode()
    )
    # Nothing half-stored: no document, no version, no content row, no temporary file.
    assert (Document.objects.count(), DocumentVersion.objects.count()) == (0, 0)
    assert StoredObject.objects.count() == 0
    assert list(uploads.iterdir()) == []

    # The endpoint comes back (empty): the same upload now goes through whole.
    throwaway_moto.start()
    throwaway_moto.client().create_bucket(Bucket=bucket)
    answer = upload(client, student, pdf)
    assert answer.status_code == 302, answer.content.decode()[-2000:]
    version = DocumentVersion.objects.get()
    stored = throwaway_moto.keys(bucket)
    assert stored == {f"documents/{version.stored.key}": pdf.stat().st_size}
    assert version.size == pdf.stat().st_size
    assert list(uploads.iterdir()) == []


def test_backup_to_s3_fails_cleanly_when_s3_dies_and_the_next_one_succeeds(
    world, filler_table, throwaway_moto, settings, tmp_path
):
    from backups.crypto import keyset_create
    from backups.services import backup_database_run

    bucket = f"backups-{uuid.uuid4().hex[:12]}"
    throwaway_moto.client().create_bucket(Bucket=bucket)
    settings.BACKUP_KEYSET_PATH = tmp_path / "keys" / "backup-keyset.json"
    keyset_create()
    local = tmp_path / "backups"
    settings.BACKUP_LOCAL_DIR = local
    settings.BACKUP_DESTINATIONS = ["local", "s3"]
    settings.BACKUP_S3_BUCKET = bucket
    settings.BACKUP_S3_ENDPOINT_URL = throwaway_moto.endpoint
    settings.BACKUP_S3_REGION = REGION
    settings.BACKUP_S3_ACCESS_KEY_ID = S3_KEY
    settings.BACKUP_S3_SECRET_ACCESS_KEY = S3_SECRET
    settings.BACKUP_S3_PREFIX = "backups/"
    settings.BACKUP_S3_PART_SIZE = 5 * 1024 * 1024
    settings.BACKUP_HEARTBEAT_SECONDS = 0.5
    # Slow, steady output (a strong level, compressed in line: threads 0) so the endpoint
    # dies between two parts even on a busy machine.
    settings.BACKUP_ZSTD_LEVEL = 12
    settings.BACKUP_ZSTD_THREADS = 0
    before = school_digests()

    # Killed between two parts: the first 5 MiB part is stored, the rest never arrives.
    killer = throwaway_moto.kill_when(lambda: throwaway_moto.parts_received(bucket) >= 1)
    run = backup_database_run(trigger="manual")
    killer.join(timeout=60)

    assert throwaway_moto.proc.poll() is not None, "the backup ended before moto was killed"
    assert run.status == BackupRun.Status.FAILED
    # Names the destination and says it could not be reached (whether a part or the final
    # "complete" call met the dead endpoint).
    assert "connect" in run.error.lower(), run.error
    assert "s3: uploading" in run.error or throwaway_moto.endpoint in run.error, run.error
    assert not BackupRun.objects.filter(status=BackupRun.Status.SUCCEEDED).exists()
    # The local copy of the same run was abandoned too: no file, no partial file.
    assert [p for p in local.rglob("*") if p.is_file()] == []

    throwaway_moto.start()
    throwaway_moto.client().create_bucket(Bucket=bucket)
    settings.BACKUP_ZSTD_LEVEL = 1
    again = backup_database_run(trigger="manual")
    assert again.status == BackupRun.Status.SUCCEEDED, again.error
    assert throwaway_moto.keys(bucket)[f"backups/{again.object_key}"] == again.stored_size
    assert (local / again.object_key).stat().st_size == again.stored_size
    assert again.row_counts[filler_table] == 300_000
    assert school_digests() == before  # nothing committed was lost or changed


def test_hybrid_copy_is_retried_with_backoff_until_s3_is_back(
    world, throwaway_moto, throwaway_redis, monkeypatch, tmp_path
):
    """Hybrid mode through the real processes: gunicorn takes the upload onto the local disk,
    a Celery worker copies it to S3. With S3 down the copy task is retried 1 s, 2 s, 4 s...
    later (DOCUMENTS_REPLICATION_RETRY_SECONDS doubling) and succeeds once S3 is back."""
    from files.sealing import keyset_generate

    bucket = f"replica-{uuid.uuid4().hex[:12]}"
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    throwaway_moto.client().create_bucket(Bucket=bucket)
    documents = tmp_path / "documents"
    shared = {
        "DATABASE_URL": child_database_url(),
        "REDIS_URL": throwaway_redis.url(1),
        "CELERY_BROKER_URL": throwaway_redis.url(2),
        "CELERY_RESULT_BACKEND": throwaway_redis.url(2),
        "CELERY_DEFAULT_QUEUE": queue,
        "DOCUMENTS_STORAGE": "hybrid",
        "DOCUMENTS_HYBRID_CLOUD": "s3",
        "DOCUMENTS_LOCAL_ROOT": str(documents),
        "DOCUMENTS_ENCRYPTION_KEYSET": keyset_generate(),
        "DOCUMENTS_S3_BUCKET": bucket,
        "DOCUMENTS_S3_ENDPOINT_URL": throwaway_moto.endpoint,
        "DOCUMENTS_S3_REGION": REGION,
        "DOCUMENTS_S3_ACCESS_KEY_ID": S3_KEY,
        "DOCUMENTS_S3_SECRET_ACCESS_KEY": S3_SECRET,
        "DOCUMENTS_S3_ADDRESSING_STYLE": "path",
        "DOCUMENTS_REPLICATION_RETRY_SECONDS": "1",
        "FILE_UPLOAD_TEMP_DIR": str(tmp_path / "uploads"),
        "DOCUMENTS_SCANNER": "",
    }
    for name, value in shared.items():
        monkeypatch.setenv(name, value)
    pdf = tmp_path / "scan.pdf"
    big_pdf(pdf, 2)

    throwaway_moto.kill()  # the cloud is down before the upload
    log = tmp_path / "worker.log"
    with running_worker(queue, log), running_gunicorn(tmp_path / "gunicorn.log") as base:
        staff = StaffClient(base)
        staff.login(world.registrar.username, PASSWORD)
        staff.get(f"/students/{world.students[0].pk}/documents/new/")  # the CSRF cookie
        with open(pdf, "rb") as fh:
            answer = staff.post(
                f"/students/{world.students[0].pk}/documents/new/",
                {"title": "Scanned file", "category": "enrollment"},
                files={"file": ("scan.pdf", fh, "application/pdf")},
            )
        # The upload itself never waits for the cloud: stored locally, committed.
        assert answer.status_code == 302, answer.text[-2000:]
        stored = StoredObject.objects.get()
        assert (documents / stored.key).stat().st_size == stored.size == pdf.stat().st_size

        def retried(times: int) -> bool:
            found = re.findall(r"replicate_stored_object\[.+\] retry: Retry in", log.read_text())
            return len(found) >= times

        wait_for(lambda: retried(2), timeout=30, what="two retries", step=0.2)
        stored.refresh_from_db()
        assert stored.replicated_at is None and ENDPOINT_DOWN in stored.replication_error
        delays = [int(d) for d in re.findall(r"retry: Retry in (\d+)s", log.read_text())]
        assert delays[:2] == [1, 2], delays  # growing delays, not a tight loop

        throwaway_moto.start()
        throwaway_moto.client().create_bucket(Bucket=bucket)
        wait_for(
            lambda: StoredObject.objects.filter(replicated_at__isnull=False).exists(),
            timeout=30,
            what="the retried copy",
            step=0.2,
        )
    stored.refresh_from_db()
    assert stored.replication_error == ""
    assert throwaway_moto.keys(bucket) == {f"documents/{stored.key}": stored.size}
    assert DocumentVersion.objects.get().stored == stored
