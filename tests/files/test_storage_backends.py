"""The upload-to-storage pipeline, the same tests on every backend: local disk, S3 (moto's
server), GCS (gcp-storage-emulator) and hybrid (local disk + S3 replica)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from files import services
from files.models import Document, DocumentVersion, StoredObject
from files.storage import content_key
from tests.files.factories import make_document, pdf_bytes, png_bytes, upload

pytestmark = pytest.mark.django_db


def _content(backend, version: DocumentVersion) -> bytes:
    return b"".join(backend.store.chunks(key=version.stored.key, sealed=version.stored.sealed))


def test_upload_stores_content_once_under_its_address(backend, world) -> None:
    document = make_document(world, content=pdf_bytes("enrollment"), name="enrol.pdf")
    version = document.current_version
    assert version.number == 1
    assert version.content_type == "application/pdf"
    assert version.original_name == "enrol.pdf"
    assert version.size == len(pdf_bytes("enrollment"))
    assert version.stored.key == content_key(sha256=version.sha256, sealed=False)
    assert backend.stored_keys() >= {version.stored.key}
    assert _content(backend, version) == pdf_bytes("enrollment")
    assert AuditEvent.objects.filter(
        action="document_upload", target_id=str(document.pk), student_id=world.students[0].pk
    ).exists()


def test_new_versions_and_restore_keep_history(backend, world) -> None:
    document = make_document(world, content=pdf_bytes("v1"))
    v1 = document.current_version
    v2 = services.document_version_create(
        document=document,
        file=upload("r2.pdf", pdf_bytes("v2")),
        comment="fixed",
        actor=world.admin,
    )
    assert (v1.number, v2.number) == (1, 2)
    v3 = services.document_version_restore(version=v1, actor=world.admin)
    document.refresh_from_db()
    assert v3.number == 3 and document.current_version == v3
    assert v3.stored_id == v1.stored_id and v3.restored_from == v1
    # Restoring copies nothing: two contents, two objects, three versions.
    assert StoredObject.objects.count() == 2
    assert len({k for k in backend.stored_keys()}) == 2
    assert _content(backend, v3) == pdf_bytes("v1")
    # History is immutable.
    v1.comment = "rewritten"
    with pytest.raises(ValidationError):
        v1.save()


def test_identical_content_is_stored_once_across_documents_and_schools(
    backend, world, other_world
) -> None:
    first = make_document(world, content=pdf_bytes("same"), title="A")
    second = make_document(world, content=pdf_bytes("same"), title="B")
    third = make_document(other_world, content=pdf_bytes("same"), title="C")
    keys = {d.current_version.stored_id for d in (first, second, third)}
    assert len(keys) == 1
    assert StoredObject.objects.count() == 1
    assert backend.stored_keys() == keys or backend.name == "hybrid"


def test_refused_upload_leaves_no_row_and_no_object(backend, world) -> None:
    with pytest.raises(ValidationError) as refused:
        make_document(world, content=png_bytes(), name="photo.png")  # academic: PDF only
    assert "must be PDF" in " ".join(refused.value.messages)
    assert not Document.objects.exists() and not StoredObject.objects.exists()
    assert backend.stored_keys() == set()


def test_sensitive_documents_are_sealed_on_local_disk_only(backend, world) -> None:
    document = make_document(
        world,
        content=pdf_bytes("immunization record"),
        category=Document.Category.MEDICAL,
        title="Immunizations",
    )
    assert document.sensitive  # medical records always are
    stored = document.current_version.stored
    assert stored.sealed is (backend.name in ("local", "hybrid"))
    if stored.sealed:
        raw = (backend.tmp / "documents" / stored.key).read_bytes()
        assert b"immunization" not in raw and len(raw) > stored.size
    assert _content(backend, document.current_version) == pdf_bytes("immunization record")


# --- a cloud endpoint that is down ------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("cloud", ["s3", "gcs"])
def test_cloud_endpoint_down_fails_clearly_and_stores_nothing(
    cloud, settings, tmp_path, world, request
) -> None:
    from tests.files.conftest import gcs_storage_config, s3_storage_config
    from tests.helpers import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    signer = tmp_path / "unused.json"
    settings.STORAGES = {
        **settings.STORAGES,
        "documents": s3_storage_config(dead, "docs")
        if cloud == "s3"
        else gcs_storage_config(dead, "docs", signer),
    }
    from files.storage import StorageUnavailable

    with pytest.raises(StorageUnavailable) as failure:
        make_document(world, content=pdf_bytes("outage"))
    assert "could not be reached" in str(failure.value)
    assert "Nothing was saved" in str(failure.value)
    assert not Document.objects.exists()
    assert not StoredObject.objects.exists()
    assert not DocumentVersion.objects.exists()


@pytest.mark.integration
def test_hybrid_uploads_while_cloud_is_down_and_catches_up_later(
    settings, tmp_path, world, request
) -> None:
    from files.storage import StorageUnavailable
    from tests.files.conftest import configure_backend, s3_storage_config
    from tests.helpers import free_port

    backend = configure_backend("hybrid", settings, tmp_path, request)
    working = settings.STORAGES["documents_replica"]
    settings.STORAGES = {
        **settings.STORAGES,
        "documents_replica": s3_storage_config(f"http://127.0.0.1:{free_port()}", backend.bucket),
    }
    document = make_document(world, content=pdf_bytes("offline"))
    stored = document.current_version.stored
    assert backend.local_keys() == {stored.key}  # the upload itself did not need the cloud
    with pytest.raises(StorageUnavailable):
        services.stored_object_replicate(stored_object_id=stored.pk)
    stored.refresh_from_db()
    assert stored.replicated_at is None and "could not be reached" in stored.replication_error
    assert backend.cloud_keys() == set()

    settings.STORAGES = {**settings.STORAGES, "documents_replica": working}
    assert services.stored_objects_replicate_pending() == 1
    stored.refresh_from_db()
    assert stored.replicated_at is not None and stored.replication_error == ""
    assert backend.cloud_keys() == {stored.key}


# --- purge, orphans, abandoned uploads --------------------------------------------------------
def test_purge_deletes_expired_trash_and_unshared_content(backend, world) -> None:
    import datetime

    from django.utils import timezone

    kept = make_document(world, content=pdf_bytes("shared"), title="Kept")
    trashed = make_document(world, content=pdf_bytes("shared"), title="Trashed")
    services.document_version_create(
        document=trashed, file=upload("only.pdf", pdf_bytes("only here")), actor=world.admin
    )
    services.stored_objects_replicate_pending()  # hybrid: both stores hold both objects
    only_key = trashed.versions.get(number=2).stored_id
    services.document_delete(document=trashed, actor=world.admin)

    assert services.documents_purge_expired().documents == 0  # still within retention
    later = timezone.now() + datetime.timedelta(days=31)
    result = services.documents_purge_expired(now=later)
    assert (result.documents, result.objects) == (1, 1)
    assert not Document.objects.filter(pk=trashed.pk).exists()
    assert Document.objects.filter(pk=kept.pk).exists()
    assert set(StoredObject.objects.values_list("key", flat=True)) == {
        kept.current_version.stored_id
    }
    assert only_key not in backend.stored_keys()
    assert kept.current_version.stored_id in backend.stored_keys()
    assert AuditEvent.objects.filter(action="document_purge", target_id=str(trashed.pk)).exists()


def test_orphan_report_finds_stray_and_missing_objects(backend, world) -> None:
    from django.core.files.base import ContentFile

    document = make_document(world, content=pdf_bytes("tracked"))
    report = services.storage_orphans_report()
    assert (report.orphan_count, report.missing_count) == (0, 0)
    stray = content_key(sha256="ab" * 32, sealed=False)
    backend.store.primary.save(stray, ContentFile(b"left behind by a crash"))
    backend.store.primary.delete(document.current_version.stored_id)
    report = services.storage_orphans_report()
    assert report.orphans == [stray]
    assert report.missing == [document.current_version.stored_id]


@pytest.mark.unit
def test_abandoned_temporary_uploads_are_removed(settings, tmp_path) -> None:
    import os
    import time
    from pathlib import Path

    folder = Path(settings.FILE_UPLOAD_TEMP_DIR)
    old, fresh = folder / "tmpold.upload.pdf", folder / "tmpnew.upload.pdf"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    hours_ago = time.time() - 7 * 3600
    os.utime(old, (hours_ago, hours_ago))
    assert services.abandoned_uploads_remove() == 1
    assert not old.exists() and fresh.exists()
