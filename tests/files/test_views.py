"""Staff pages: upload on the student profile, version history, restore, trash; every
refusal a clear message and nothing stored."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from files import services
from files.models import Document, DocumentVersion, StoredObject
from tests.files.factories import docx_bytes, make_document, pdf_bytes, png_bytes, upload

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _upload(client, student, name: str, content: bytes, **fields):
    data = {"title": "", "category": "academic", "comment": "", "file": upload(name, content)}
    data.update(fields)
    return client.post(reverse("files:student_document_upload", args=[student.pk]), data)


def _nothing_stored(tmp_path) -> bool:
    root = tmp_path / "documents"
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return not files and not Document.objects.exists() and not StoredObject.objects.exists()


def test_registrar_uploads_on_the_student_profile(client, world, settings) -> None:
    client.force_login(world.registrar)
    student = world.students[0]
    response = _upload(
        client, student, "Enrolment form.pdf", pdf_bytes("form"), category="enrollment"
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("students:student_detail", args=[student.pk])
    document = Document.objects.get()
    assert (document.title, document.student, document.category) == (
        "Enrolment form.pdf",
        student,
        "enrollment",
    )
    assert document.current_version.uploaded_by == world.registrar
    profile = client.get(response["Location"])
    assert "Enrolment form.pdf" in profile.content.decode()
    # Nothing stays behind in the upload scratch folder.
    from pathlib import Path

    assert list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()) == []


@pytest.mark.parametrize(
    "name,content,category,message",
    [
        ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 300, "academic", "application/x-dosexec"),
        ("photo.pdf", png_bytes(), "other", "but its name ends in .pdf"),
        ("plan.docx", docx_bytes(), "custody", "Custody or legal order documents must be PDF"),
        ("../../etc/passwd", pdf_bytes("x"), "academic", "has no extension"),
        ("page.html", b"<html><script>alert(1)</script></html>", "other", "text/html"),
        ("empty.pdf", b"", "academic", "empty"),
    ],
)
def test_refusals_say_why_and_store_nothing(
    client, world, tmp_path, name, content, category, message
) -> None:
    client.force_login(world.registrar)
    response = _upload(client, world.students[0], name, content, category=category)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert _nothing_stored(tmp_path)


def test_oversize_upload_is_cut_off_while_streaming(client, world, settings, tmp_path) -> None:
    settings.DOCUMENTS_MAX_UPLOAD_BYTES = 1000
    client.force_login(world.registrar)
    big = pdf_bytes("big") + b"%" * 5000
    response = _upload(client, world.students[0], "big.pdf", big)
    assert response.status_code == 200
    assert "larger than 1000" in response.content.decode()
    assert _nothing_stored(tmp_path)
    from pathlib import Path

    assert list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()) == []  # partial file deleted


def test_traversal_names_never_reach_storage(client, world, tmp_path) -> None:
    client.force_login(world.registrar)
    for name in ("../../etc/passwd.pdf", "..\\..\\windows\\win.ini.pdf", "/etc/shadow.pdf"):
        response = _upload(client, world.students[0], name, pdf_bytes(name))
        assert response.status_code == 302, response.content.decode()[:500]
    names = set(DocumentVersion.objects.values_list("original_name", flat=True))
    assert names == {"passwd.pdf", "win.ini.pdf", "shadow.pdf"}
    files = [p for p in (tmp_path / "documents").rglob("*") if p.is_file()]
    assert all(p.parent.parent.parent.parent == tmp_path / "documents" for p in files)
    assert all(len(p.name) == 64 for p in files)  # content addresses, never user names


def test_teachers_and_auditors_cannot_upload(client, world) -> None:
    for user in (world.teacher, world.auditor):
        client.force_login(user)
        response = _upload(client, world.students[0], "a.pdf", pdf_bytes())
        assert response.status_code == 403
    assert not Document.objects.exists()


def test_new_version_restore_and_trash_through_the_pages(client, world) -> None:
    document = make_document(world, content=pdf_bytes("one"))
    client.force_login(world.registrar)
    detail = reverse("files:document_detail", args=[document.pk])
    response = client.post(
        reverse("files:version_upload", args=[document.pk]),
        {"file": upload("two.pdf", pdf_bytes("two")), "comment": "signed copy"},
    )
    assert response.status_code == 302 and response["Location"] == detail
    v1 = document.versions.get(number=1)
    confirm = client.get(reverse("files:version_restore", args=[v1.pk]))
    assert confirm.status_code == 200 and "Restore version 1?" in confirm.content.decode()
    client.post(reverse("files:version_restore", args=[v1.pk]))
    page = client.get(detail)
    rows = page.context["versions"]
    assert [v.number for v in rows] == [3, 2, 1]
    assert rows[0].restored_from == v1 and rows[0].stored_id == v1.stored_id
    assert rows[1].comment == "signed copy"
    body = page.content.decode()
    assert "signed copy" in body and "same content as version 1" in body

    # A registrar may not delete; a school administrator moves it to the trash.
    assert client.post(reverse("files:document_delete", args=[document.pk])).status_code == 403
    client.force_login(world.admin)
    response = client.post(reverse("files:document_delete", args=[document.pk]))
    assert response.status_code == 302
    document.refresh_from_db()
    assert document.is_deleted
    assert client.get(detail).status_code == 404


def test_version_history_queries_do_not_grow_with_versions(client, world) -> None:
    document = make_document(world, content=pdf_bytes("v1"))
    client.force_login(world.registrar)
    url = reverse("files:document_detail", args=[document.pk])
    client.get(url)  # warm the session and permission caches

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    few = queries()
    for n in range(2, 12):
        services.document_version_create(
            document=document, file=upload(f"v{n}.pdf", pdf_bytes(f"v{n}")), actor=world.admin
        )
    assert document.versions.count() == 11
    assert queries() == few


def test_school_documents_page(client, world) -> None:
    client.force_login(world.admin)
    url = reverse("files:school_documents")
    response = client.post(
        url,
        {"title": "Handbook", "category": "other", "file": upload("handbook.pdf", pdf_bytes())},
    )
    assert response.status_code == 302
    document = Document.objects.get()
    assert document.student is None and document.title == "Handbook"
    client.force_login(world.teacher)
    page = client.get(url)
    assert page.status_code == 200 and "Handbook" in page.content.decode()
    assert client.post(url, {}).status_code == 403


def test_cloud_outage_on_upload_is_a_clear_message(client, world, settings) -> None:
    from tests.files.conftest import s3_storage_config
    from tests.helpers import free_port

    settings.STORAGES = {
        **settings.STORAGES,
        "documents": s3_storage_config(f"http://127.0.0.1:{free_port()}", "docs"),
    }
    client.force_login(world.registrar)
    response = _upload(client, world.students[0], "a.pdf", pdf_bytes())
    assert response.status_code == 200
    assert "could not be reached" in response.content.decode()
    assert not Document.objects.exists()


def test_production_without_a_keyset_refuses_sensitive_uploads(client, world, settings) -> None:
    settings.DOCUMENTS_ENCRYPTION_KEYSET = ""
    settings.DEBUG = False
    settings.TESTING = False
    client.force_login(world.registrar)
    response = _upload(client, world.students[0], "shot.pdf", pdf_bytes(), category="medical")
    assert response.status_code == 200
    assert "no encryption key is configured" in response.content.decode()
    assert not Document.objects.exists()
    # Ordinary documents are still accepted.
    assert _upload(client, world.students[0], "a.pdf", pdf_bytes()).status_code == 302
