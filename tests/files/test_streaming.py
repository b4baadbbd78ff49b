"""A 20 MB upload through the whole request stack (middleware, CSRF, session, view, service)
keeps the server's Python memory small: the body is streamed to a temporary file while being
hashed, and stored from there. The 1 GB figure with a real gunicorn is in BENCHMARKS.md
(bench/upload_memory.py)."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import reverse

from bench.upload_memory import PDF_HEAD, StreamingMultipart, content_chunks
from files.models import DocumentVersion

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

SIZE = 20 * 1024 * 1024


def _expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in content_chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


def test_20_mb_upload_streams_through_the_real_view(client, world, tmp_path) -> None:
    client.force_login(world.registrar)
    path = reverse("files:student_document_upload", args=[world.students[0].pk])
    token = str(client.get(path).context["csrf_token"])
    body = StreamingMultipart(
        fields={"csrfmiddlewaretoken": token, "category": "academic", "title": "Scan"},
        filename="scan.pdf",
        size=SIZE,
    )
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "CONTENT_TYPE": body.content_type,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_COOKIE": "; ".join(f"{k}={v.value}" for k, v in client.cookies.items()),
        "HTTP_HOST": "127.0.0.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": body,
        "wsgi.url_scheme": "http",
        "wsgi.errors": None,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    statuses: list[str] = []
    # As Django's test client does: the test's database connection must survive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    tracemalloc.start()
    try:
        response = WSGIHandler()(environ, lambda status, headers: statuses.append(status))
        response.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert statuses == ["302 Found"]
    version = DocumentVersion.objects.get()
    assert version.size == SIZE and version.content_type == "application/pdf"
    assert version.sha256 == _expected_sha256(SIZE)
    stored = tmp_path / "documents" / version.stored_id
    assert stored.stat().st_size == SIZE
    with open(stored, "rb") as handle:
        assert handle.read(len(PDF_HEAD)) == PDF_HEAD
    # 20 MB went through; the peak (which includes this in-process client's 1 MiB blocks and
    # the 1 MiB copy buffer) is a fraction of it. Reading the file whole would need > 20 MB.
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak / 1e6:.1f} MB"
