"""The disk fills up: the backup directory (an 8 MiB tmpfs) cannot hold the dump, then the
documents folder cannot hold an upload. Each fails with an error that says so, leaves no
partial file and no row, and the database is untouched."""

from __future__ import annotations

import os
import re

import pytest

from backups.models import BackupRun
from files.models import Document, DocumentVersion, StoredObject
from students.models import Student
from tests.faults.conftest import school_digests
from tests.files.factories import pdf_bytes

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.xdist_group("faults"),
    pytest.mark.django_db(transaction=True),
]


def files_in(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file()]


def fill(folder, *, leave: int) -> None:
    """Fill the filesystem of `folder` until only about `leave` bytes are free."""
    (folder / "ballast").unlink(missing_ok=True)
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    with open(folder / "ballast", "wb") as out:
        out.write(b"\0" * max(free - leave, 0))


def test_backup_bigger_than_the_disk_fails_cleanly(world, filler_table, small_disk, settings):
    from backups.crypto import keyset_create
    from backups.services import backup_database_run

    settings.BACKUP_KEYSET_PATH = small_disk.parent / "keys" / "backup-keyset.json"
    keyset_create()
    settings.BACKUP_LOCAL_DIR = small_disk / "backups"
    settings.BACKUP_DESTINATIONS = ["local"]
    settings.BACKUP_HEARTBEAT_SECONDS = 0.5
    before = school_digests()

    run = backup_database_run(trigger="manual")  # ~15 MB once compressed, 8 MiB of disk

    assert run.status == BackupRun.Status.FAILED
    assert "No space left on device" in run.error, run.error
    assert not BackupRun.objects.filter(status=BackupRun.Status.SUCCEEDED).exists()
    assert files_in(small_disk) == []  # the partial file is gone: the space is free again
    assert school_digests() == before  # the database is untouched


@pytest.fixture
def documents_on(settings):
    """Point the document store and the upload scratch folder at one (small) disk."""

    def configure(disk):
        documents, uploads = disk / "documents", disk / "uploads"
        uploads.mkdir()
        settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
        settings.DOCUMENTS_SCANNER = ""
        settings.STORAGES = {
            **{k: v for k, v in settings.STORAGES.items() if k != "documents_replica"},
            "documents": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(documents), "base_url": None},
            },
        }
        return documents, uploads

    return configure


def upload(client, student, size: int):
    from django.core.files.uploadedfile import SimpleUploadedFile

    head, tail = pdf_bytes("full disk").split(b"trailer")
    content = head + b"%" + os.urandom(size) + b"\ntrailer" + tail
    return client.post(
        f"/students/{student.pk}/documents/new/",
        {
            "title": "Scan",
            "category": "enrollment",
            "file": SimpleUploadedFile("scan.pdf", content, "application/pdf"),
        },
    )


# In-process only (no other process reads these rows): the quicker rollback-per-test mode.
@pytest.mark.django_db
def test_upload_to_a_full_documents_disk_fails_cleanly(
    world, small_disk, documents_on, client, caplog
):
    documents, uploads = documents_on(small_disk)
    client.force_login(world.registrar)
    student = world.students[0]
    pupils = list(Student.objects.filter(school=world.school).values_list("pk", "last_name"))

    # Room for the upload's temporary copy, not for the stored one as well.
    fill(small_disk, leave=1536 << 10)
    answer = upload(client, student, 1 << 20)
    assert answer.status_code == 200  # the form again, with the reason
    assert "Nothing was saved" in answer.content.decode()
    assert "No space left on device" in caplog.text  # the operator learns why
    assert (Document.objects.count(), DocumentVersion.objects.count()) == (0, 0)
    assert StoredObject.objects.count() == 0
    assert files_in(documents) == [] and files_in(uploads) == []  # no scratch file left
    assert list(Student.objects.filter(school=world.school).values_list("pk", "last_name")) == (
        pupils
    )

    # Space freed: the same upload goes through.
    (small_disk / "ballast").unlink()
    answer = upload(client, student, 1 << 20)
    assert answer.status_code == 302
    version = DocumentVersion.objects.get()
    assert (documents / version.stored.key).stat().st_size == version.size


@pytest.mark.django_db
def test_a_full_documents_disk_is_named_in_the_error(world, small_disk, documents_on, client):
    documents_on(small_disk)
    client.force_login(world.registrar)
    fill(small_disk, leave=1536 << 10)
    page = upload(client, world.students[0], 1 << 20).content.decode()
    assert "Nothing was saved" in page and re.search(r"full|no space", page, re.I), page


@pytest.mark.django_db
def test_upload_with_no_room_for_its_temporary_file_is_refused(world, small_disk, documents_on):
    from django.test import Client

    documents, uploads = documents_on(small_disk)
    client = Client(raise_request_exception=False)
    client.force_login(world.registrar)
    fill(small_disk, leave=64 << 10)
    answer = upload(client, world.students[0], 1 << 20)
    # Whatever the answer, nothing is stored and no scratch file is left behind.
    assert DocumentVersion.objects.count() == 0 and StoredObject.objects.count() == 0
    assert files_in(documents) == [] and files_in(uploads) == []
    assert answer.status_code == 200, answer.status_code
    assert re.search(r"space|room|full", answer.content.decode(), re.I)
