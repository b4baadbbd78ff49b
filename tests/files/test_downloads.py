"""Downloads: only through the authorizing view, which logs the access and answers with a
short-lived link (Django-signed token for the local disk, presigned for S3, V4-signed for
GCS). Expired, tampered and cross-school links get 403."""

from __future__ import annotations

import binascii
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core import signing
from django.urls import reverse

from audit.models import AuditEvent
from files import services
from files.models import Document
from files.storage import LINK_SIGNING_NAMESPACE
from tests.files.factories import make_document, pdf_bytes

pytestmark = pytest.mark.django_db


def _fetch(client, url: str) -> tuple[int, bytes, dict]:
    """Follow a download link like a browser: our own URLs through the test client, cloud
    URLs over HTTP to the emulator."""
    if url.startswith("/"):
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, body, dict(response.headers)
    response = requests.get(url, timeout=10)
    return response.status_code, response.content, dict(response.headers)


def _download_page(client, version) -> object:
    return client.get(reverse("files:version_download", args=[version.pk]))


def test_download_view_logs_access_and_hands_out_a_working_link(backend, client, world) -> None:
    document = make_document(world, content=pdf_bytes("transcript"), name="Transcript 2026.pdf")
    services.stored_objects_replicate_pending()
    client.force_login(world.registrar)
    page = _download_page(client, document.current_version)
    assert page.status_code == 200
    link = page.context["link"]
    assert link.via == ("local" if backend.name in ("local", "hybrid") else backend.name)
    status, body, headers = _fetch(client, link.url)
    assert status == 200 and body == pdf_bytes("transcript")
    disposition = {k.lower(): v for k, v in headers.items()}.get("content-disposition", "")
    assert disposition.startswith("attachment") and "Transcript 2026.pdf" in disposition
    event = AuditEvent.objects.get(action="document_download")
    assert event.actor == world.registrar and event.school_id == world.school.pk
    assert event.student_id == world.students[0].pk and event.ip_address == "127.0.0.1"
    assert event.changes["version"] == 1 and event.changes["via"] == link.via


@pytest.mark.integration
def test_s3_link_is_presigned_and_short_lived(settings, tmp_path, client, world, request) -> None:
    from tests.files.conftest import configure_backend

    configure_backend("s3", settings, tmp_path, request)
    document = make_document(world, content=pdf_bytes("s3"))
    client.force_login(world.admin)
    url = _download_page(client, document.current_version).context["link"].url
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "X-Amz-Signature" in query
    # The object is private: the same URL without its signature is refused by the server.
    assert requests.get(url.split("?")[0], timeout=10).status_code == 403


def _verify_gcs_v4(url: str, public_key) -> None:
    """Check a V4 signed URL the way GCS does: rebuild the string to sign, verify the RSA
    signature with the service account's public key. Raises InvalidSignature otherwise."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urlsplit(url)
    signed_query, signature = parts.query.rsplit("&X-Goog-Signature=", 1)
    params = parse_qs(signed_query)
    scope = params["X-Goog-Credential"][0].split("/", 1)[1]
    canonical = "\n".join(
        ["GET", parts.path, signed_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            params["X-Goog-Date"][0],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    public_key.verify(
        binascii.unhexlify(signature), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


@pytest.mark.integration
def test_gcs_link_is_v4_signed_and_short_lived(settings, tmp_path, client, world, request) -> None:
    from cryptography.exceptions import InvalidSignature

    from tests.files.conftest import configure_backend

    configure_backend("gcs", settings, tmp_path, request)
    _key_file, public_key = request.getfixturevalue("gcs_signing_key")
    document = make_document(world, content=pdf_bytes("gcs"))
    client.force_login(world.admin)
    url = _download_page(client, document.current_version).context["link"].url
    query = parse_qs(urlsplit(url).query)
    assert query["X-Goog-Expires"] == ["300"] and query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    _verify_gcs_v4(url, public_key)
    # Pointing the link at another object breaks the signature.
    with pytest.raises(InvalidSignature):
        _verify_gcs_v4(url.replace("/sha256/", "/sealed/"), public_key)
    assert requests.get(url, timeout=10).content == pdf_bytes("gcs")


@pytest.mark.integration
def test_hybrid_reads_fall_back_to_the_cloud_when_the_local_copy_is_gone(
    settings, tmp_path, client, world, request
) -> None:
    from tests.files.conftest import configure_backend

    backend = configure_backend("hybrid", settings, tmp_path, request)
    document = make_document(world, content=pdf_bytes("hybrid"))
    key = document.current_version.stored_id
    client.force_login(world.admin)
    # Not replicated yet and the local copy is there: served locally.
    local_url = _download_page(client, document.current_version).context["link"].url
    services.stored_objects_replicate_pending()
    (backend.tmp / "documents" / key).unlink()
    # A local link issued before the loss now redirects to the cloud copy...
    response = client.get(local_url)
    assert response.status_code == 302 and "X-Amz-Signature" in response["Location"]
    assert requests.get(response["Location"], timeout=10).content == pdf_bytes("hybrid")
    # ...and new links point at the cloud directly.
    link = _download_page(client, document.current_version).context["link"]
    assert link.via == "s3"
    assert requests.get(link.url, timeout=10).content == pdf_bytes("hybrid")


# --- the local token ----------------------------------------------------------------------------
def _local_link(client, world, **make) -> tuple[str, Document]:
    document = make_document(world, **make)
    client.force_login(world.registrar)
    return _download_page(client, document.current_version).context["link"].url, document


@pytest.mark.unit
def test_expired_local_link_is_refused(client, world) -> None:
    url, document = _local_link(client, world)
    payload = {"v": document.current_version.pk, "s": world.school.pk, "u": world.registrar.pk}

    class IssuedAnHourAgo(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - 3600)

    stale = IssuedAnHourAgo(salt=LINK_SIGNING_NAMESPACE).sign_object(payload)
    response = client.get(reverse("files:serve"), {"t": stale})
    assert response.status_code == 403
    assert "expired" in response.content.decode()
    assert client.get(url).status_code == 200  # the fresh one works


@pytest.mark.unit
def test_tampered_local_link_is_refused(client, world) -> None:
    url, document = _local_link(client, world)
    token = parse_qs(urlsplit(url).query)["t"][0]
    other = make_document(world, content=pdf_bytes("someone else's"), title="Other")
    # Swap the version id in the payload, keep the signature.
    forged = signing.dumps(
        {"v": other.current_version.pk, "s": world.school.pk, "u": world.registrar.pk},
        salt="not-ours",
    )
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), forged, "", "x:y:z"):
        response = client.get(reverse("files:serve"), {"t": bad})
        assert response.status_code == 403, bad


@pytest.mark.unit
def test_local_link_is_for_its_user_and_school_only(client, world, other_world) -> None:
    url, _document = _local_link(client, world)
    client.force_login(world.admin)  # same school, another person
    assert client.get(url).status_code == 403
    client.force_login(other_world.admin)  # another school
    assert client.get(url).status_code == 403
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


@pytest.mark.unit
def test_cross_school_and_out_of_class_documents_are_invisible(client, world, other_world) -> None:
    theirs = make_document(other_world, content=pdf_bytes("south"))
    outsider_doc = make_document(world, student=world.outsider, content=pdf_bytes("7B"))
    mine = make_document(world, content=pdf_bytes("7A"))
    client.force_login(world.admin)
    assert _download_page(client, theirs.current_version).status_code == 404
    assert client.get(reverse("files:document_detail", args=[theirs.pk])).status_code == 404
    client.force_login(world.teacher)
    assert _download_page(client, outsider_doc.current_version).status_code == 404
    assert _download_page(client, mine.current_version).status_code == 200
    assert not AuditEvent.objects.filter(
        action="document_download", target_id=str(theirs.current_version.pk)
    ).exists()


@pytest.mark.unit
def test_sensitive_documents_are_hidden_from_teachers(client, world) -> None:
    medical = make_document(
        world,
        content=pdf_bytes("allergy plan"),
        category=Document.Category.MEDICAL,
        title="Allergy action plan",
    )
    make_document(world, content=pdf_bytes("timetable"), title="Class timetable")
    client.force_login(world.teacher)
    assert _download_page(client, medical.current_version).status_code == 404
    profile = client.get(reverse("students:student_detail", args=[world.students[0].pk]))
    assert "Class timetable" in profile.content.decode()
    assert "Allergy action plan" not in profile.content.decode()
    client.force_login(world.auditor)  # auditors read everything in their school
    assert _download_page(client, medical.current_version).status_code == 200


@pytest.mark.unit
def test_a_profiles_documents_card_shows_only_what_the_user_may_see(world, other_world) -> None:
    """The card's list (files.selectors.student_documents_list) checks the student itself:
    a teacher gets nothing for a child outside their classes, nobody for another school's."""
    from files.selectors import student_documents_list
    from students.tenancy import resolve_access

    outsider_doc = make_document(world, student=world.outsider, title="7B letter")
    medical = make_document(world, category=Document.Category.MEDICAL, title="Allergy action plan")
    letter = make_document(world, title="Class letter")
    teacher = resolve_access(world.teacher, None)
    registrar = resolve_access(world.registrar, None)
    titles = lambda access, student: {  # noqa: E731
        d.title for d in student_documents_list(access=access, student=student)
    }
    assert titles(teacher, world.students[0]) == {letter.title}  # not the medical one
    assert titles(teacher, world.outsider) == set()
    assert titles(registrar, world.students[0]) == {letter.title, medical.title}
    assert titles(registrar, world.outsider) == {outsider_doc.title}
    assert titles(registrar, other_world.students[0]) == set()


@pytest.mark.unit
def test_sealed_content_is_decrypted_on_the_way_out(client, world, tmp_path) -> None:
    url, document = _local_link(
        client, world, content=pdf_bytes("custody order"), category=Document.Category.CUSTODY
    )
    stored = document.current_version.stored
    assert stored.sealed
    response = client.get(url)
    assert b"".join(response.streaming_content) == pdf_bytes("custody order")
    assert response["Content-Length"] == str(len(pdf_bytes("custody order")))
    assert response["Cache-Control"] == "private, no-store"
    # A flipped byte in the sealed file fails authentication instead of serving bad bytes.
    path = tmp_path / "documents" / stored.key
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    path.write_bytes(bytes(raw))
    from files.storage import document_store

    with pytest.raises(Exception, match="(?i)decrypt|authentic|tag|match"):
        b"".join(document_store().chunks(key=stored.key, sealed=True))


@pytest.mark.unit
def test_x_accel_redirect_hands_plain_files_to_nginx(client, world, settings) -> None:
    settings.DOCUMENTS_X_ACCEL_REDIRECT_PREFIX = "/protected-media/documents/"
    url, document = _local_link(client, world)
    response = client.get(url)
    key = document.current_version.stored_id
    assert response["X-Accel-Redirect"] == f"/protected-media/documents/{key}"
    assert response.content == b""  # nginx sends the bytes
    assert response["Content-Disposition"].startswith("attachment")


@pytest.mark.unit
def test_trashed_document_links_stop_working(client, world) -> None:
    url, document = _local_link(client, world)
    assert client.get(url).status_code == 200
    services.document_delete(document=document, actor=world.admin)
    from django.core.cache import cache

    from files.services import version_cache_key

    # In production the cache entry goes when the transaction commits; tests run inside one.
    cache.delete(version_cache_key(document.current_version.pk))
    assert client.get(url).status_code == 403
    assert _download_page(client, document.current_version).status_code == 404


@pytest.mark.unit
def test_version_metadata_is_served_from_the_cache(world, django_assert_num_queries) -> None:
    from django.core.cache import cache

    from files.selectors import version_meta_get
    from files.services import version_cache_key

    document = make_document(world)
    version = document.current_version
    with django_assert_num_queries(1):
        meta = version_meta_get(version_id=version.pk)
    assert meta is not None and meta.key == version.stored_id and meta.downloadable
    assert cache.get(version_cache_key(version.pk)) == meta  # in Redis
    with django_assert_num_queries(0):
        assert version_meta_get(version_id=version.pk) == meta
