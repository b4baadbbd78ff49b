"""Erasure reaches the backups: media manifests are pruned by the retention policies, and the
copies of a purged document's content are deleted from every destination by the next prune,
so no backup (older or newer) can bring it back. Content that is only missing on one side
(the row or the stored object) is the accident backups exist for, and is kept."""

from __future__ import annotations

import datetime

import pytest
from django.core.files.storage import storages
from django.utils import timezone

from audit.models import AuditEvent
from backups.models import BackupRun, MediaObject, RetentionPolicy
from backups.services import backup_media_run, backups_prune, media_restore
from files import services as files_services
from files.models import StoredObject
from tests.files.factories import make_document, pdf_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def documents(settings, tmp_path):
    from files.sealing import keyset_generate

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    settings.DOCUMENTS_ENCRYPTION_KEYSET = keyset_generate()
    settings.DOCUMENTS_SCANNER = ""
    settings.STORAGES = {
        **{k: v for k, v in settings.STORAGES.items() if k != "documents_replica"},
        "documents": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "documents"), "base_url": None},
        },
    }
    settings.BACKUP_MEDIA_STORAGE = "documents"
    return storages["documents"]


def key_of(document) -> str:
    return document.versions.get().stored_id


def backup_copies(clouds, local_backups, key: str) -> dict[str, bool]:
    name = f"media/objects/{key}"
    return {
        "local": (local_backups / name).exists(),
        "s3": f"backups/{name}" in clouds.s3_keys(),
        "gcs": f"backups/{name}" in clouds.gcs_keys(),
    }


def purge(document, world) -> None:
    """Trash the document, then let the nightly purge run after the trash period."""
    files_services.document_delete(document=document, actor=world.admin)
    later = timezone.now() + datetime.timedelta(days=31)
    assert files_services.documents_purge_expired(now=later).documents == 1


def test_a_purged_document_is_erased_from_every_destination_by_the_next_prune(
    world, documents, clouds, local_backups
) -> None:
    kept = make_document(world, content=pdf_bytes("kept report"), title="Kept")
    purged = make_document(world, content=pdf_bytes("erase me"), title="Erased", sensitive=True)
    kept_key, purged_key = key_of(kept), key_of(purged)
    before_purge = backup_media_run()
    assert before_purge.objects_copied == 2
    # Taken a month before (retention keeps each day's newest manifest: both stay).
    BackupRun.objects.filter(pk=before_purge.pk).update(
        started_at=before_purge.started_at - datetime.timedelta(days=31)
    )
    assert backup_copies(clouds, local_backups, purged_key) == {
        "local": True,
        "s3": True,
        "gcs": True,
    }

    purge(purged, world)
    after_purge = backup_media_run()
    assert after_purge.status == BackupRun.Status.SUCCEEDED, after_purge.error
    report = backups_prune()
    assert report.errors == []
    assert {name: names for name, names in report.erased.items()} == {
        "local": [purged_key],
        "s3": [purged_key],
        "gcs": [purged_key],
    }
    # Gone from every destination, while both manifests are still kept.
    assert {before_purge.pk, after_purge.pk} <= set(report.kept["local"])
    assert backup_copies(clouds, local_backups, purged_key) == {
        "local": False,
        "s3": False,
        "gcs": False,
    }
    assert backup_copies(clouds, local_backups, kept_key) == {
        "local": True,
        "s3": True,
        "gcs": True,
    }
    assert MediaObject.objects.get(name=purged_key).erased_at is not None
    assert AuditEvent.objects.filter(action="backup_media_erase").count() == 1

    # The store loses everything: no backup, taken before or after the purge, brings the
    # purged content back; the other document comes back from either.
    documents.delete(kept_key)
    assert media_restore(run=after_purge) == (1, 0, 0)
    assert not documents.exists(purged_key)
    documents.delete(kept_key)
    assert media_restore(run=before_purge) == (1, 0, 1)  # one object erased since
    assert documents.exists(kept_key) and not documents.exists(purged_key)

    # The next prune has nothing more to erase.
    assert backups_prune().erased == {}


def test_content_missing_on_one_side_only_is_kept_and_restored(
    world, documents, clouds, local_backups
) -> None:
    lost_from_store = make_document(world, content=pdf_bytes("store lost it"))
    row_lost = make_document(world, content=pdf_bytes("row lost"), title="Other")
    store_key, row_key = key_of(lost_from_store), key_of(row_lost)
    backup_media_run()

    # An accident in the store (the row still names the content) ...
    documents.delete(store_key)
    # ... and a database that no longer knows content the store still holds (restored to an
    # earlier point, say).
    row_lost.versions.all().delete()
    StoredObject.objects.filter(key=row_key).delete()

    latest = backup_media_run()
    assert backups_prune().erased == {}
    for key in (store_key, row_key):
        assert backup_copies(clouds, local_backups, key) == {
            "local": True,
            "s3": True,
            "gcs": True,
        }
    assert media_restore(run=latest) == (1, 0, 0)
    assert documents.exists(store_key)


def test_media_manifests_follow_the_retention_policy(world, documents, local_backups) -> None:
    document = make_document(world, content=pdf_bytes("kept all along"))
    runs = [backup_media_run() for _ in range(3)]
    base = timezone.now() - datetime.timedelta(days=10)
    for i, run in enumerate(runs):  # three different days
        BackupRun.objects.filter(pk=run.pk).update(started_at=base + datetime.timedelta(days=i))
    RetentionPolicy.objects.create(destination="local", keep_daily=1, keep_weekly=0, keep_monthly=0)

    report = backups_prune()
    assert report.kept["local"] == [runs[2].pk]
    assert report.deleted["local"] == [runs[0].pk, runs[1].pk]
    for run in runs[:2]:
        run.refresh_from_db()
        assert run.pruned_at and not (local_backups / run.object_key).exists()
    assert (local_backups / runs[2].object_key).exists()
    # The object every kept manifest needs stays.
    assert (local_backups / "media" / "objects" / key_of(document)).exists()


def test_a_copy_lost_at_a_destination_is_copied_again(world, documents, clouds) -> None:
    from tests.backups.conftest import s3_client

    document = make_document(world, content=pdf_bytes("copy me twice"))
    backup_media_run()
    s3_client(clouds.s3_endpoint).delete_object(
        Bucket=clouds.s3_bucket, Key=f"backups/media/objects/{key_of(document)}"
    )
    assert backup_media_run().objects_copied == 0  # the record is trusted between prunes
    backups_prune()  # lists each destination: the lost copy is forgotten
    assert MediaObject.objects.get(name=key_of(document)).destinations == ["gcs", "local"]
    assert backup_media_run().objects_copied == 1
    assert f"backups/media/objects/{key_of(document)}" in clouds.s3_keys()
