"""Media backups: incremental copies of content-addressed objects, a manifest per run, and a
restore from that manifest."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from backups.models import BackupRun
from backups.services import backup_media_run, media_restore
from files.models import StoredObject

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def documents(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "documents": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "documents")},
        },
    }
    settings.BACKUP_MEDIA_STORAGE = "documents"
    return storages["documents"]


def put(storage, content: bytes, *, sealed: bool = False) -> str:
    """An object in the store under its content address, with the documents app's row (what
    an upload leaves; the media backup takes the objects the rows name)."""
    digest = hashlib.sha256(content).hexdigest()
    key = f"{'sealed' if sealed else 'sha256'}/{digest[:2]}/{digest[2:4]}/{digest}"
    assert storage.save(key, ContentFile(content)) == key
    StoredObject.objects.create(key=key, sha256=digest, size=len(content), sealed=sealed)
    return key


def test_increments_copy_only_new_objects_and_a_manifest_restores_them(
    documents, clouds, local_backups
) -> None:
    first = [put(documents, f"report card {i}".encode() * 1000) for i in range(3)]
    documents.save(".incoming/upload-in-progress", ContentFile(b"half"))  # never backed up
    run1 = backup_media_run()
    assert run1.status == BackupRun.Status.SUCCEEDED, run1.error
    assert (run1.objects_copied, run1.objects_present) == (3, 0)
    assert {f"backups/media/objects/{k}" for k in first} <= clouds.s3_keys()
    assert not any("incoming" in k for k in clouds.s3_keys())

    later = put(documents, b"%PDF-1.7 signed consent form", sealed=True)
    run2 = backup_media_run()
    assert (run2.objects_copied, run2.objects_present) == (1, 3)
    assert f"backups/media/objects/{later}" in clouds.gcs_keys()
    # Objects are stored encrypted, never in clear.
    stored = (local_backups / "media" / "objects" / later).read_bytes()
    assert b"consent form" not in stored

    originals = {k: documents.open(k).read() for k in [*first, later]}
    for key in [*first, later]:
        documents.delete(key)
    assert media_restore(run=run2) == (4, 0, 0)
    assert {k: documents.open(k).read() for k in originals} == originals
    assert media_restore(run=run2) == (0, 4, 0)  # nothing missing any more


def test_an_empty_store_still_gets_a_manifest(documents, local_backups) -> None:
    run = backup_media_run()
    assert run.status == BackupRun.Status.SUCCEEDED
    assert (local_backups / run.object_key).exists()
    assert media_restore(run=run) == (0, 0, 0)
