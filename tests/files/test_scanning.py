"""The scanner hook: off by default, pluggable, quarantines infected content; and the clamd
backend's INSTREAM protocol against a small clamd stand-in on loopback."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from files import services
from files.models import StoredObject
from files.scanning import ClamdScanner, ScannerUnavailable
from tests.files.factories import make_document, pdf_bytes
from tests.files.fakes import EICAR

pytestmark = pytest.mark.django_db


@pytest.mark.unit
def test_without_a_scanner_content_is_not_scanned(world) -> None:
    document = make_document(world)
    assert document.current_version.stored.scan_status == StoredObject.ScanStatus.NOT_SCANNED


@pytest.mark.unit
def test_infected_content_is_quarantined_everywhere(
    world, other_world, client, settings, django_capture_on_commit_callbacks
) -> None:
    settings.DOCUMENTS_SCANNER = "tests.files.fakes.EicarScanner"
    infected = pdf_bytes("cover letter") + EICAR
    with django_capture_on_commit_callbacks(execute=True):
        clean = make_document(world, content=pdf_bytes("clean"), title="Clean")
        ours = make_document(world, content=infected, title="Letter")
        theirs = make_document(other_world, content=infected, title="Same bytes")
    clean_stored = StoredObject.objects.get(key=clean.current_version.stored_id)
    assert clean_stored.scan_status == StoredObject.ScanStatus.CLEAN
    stored = StoredObject.objects.get(key=ours.current_version.stored_id)
    assert stored.scan_status == StoredObject.ScanStatus.INFECTED
    assert stored.scan_signature == "Eicar-Test-Signature"
    assert theirs.current_version.stored_id == stored.key  # one object, one verdict
    events = AuditEvent.objects.filter(action="document_quarantine")
    assert {e.school_id for e in events} == {world.school.pk, other_world.school.pk}

    client.force_login(world.registrar)
    page = client.get(reverse("files:version_download", args=[ours.current_version.pk]))
    assert page.status_code == 409 and "quarantined" in page.content.decode()
    assert "Eicar-Test-Signature" in page.content.decode()
    history = client.get(reverse("files:document_detail", args=[ours.pk]))
    assert "Quarantined" in history.content.decode()
    ok = client.get(reverse("files:version_download", args=[clean.current_version.pk]))
    assert ok.status_code == 200


@pytest.mark.unit
def test_pending_scan_blocks_downloads_until_a_verdict(world, client, settings) -> None:
    settings.DOCUMENTS_SCANNER = "tests.files.fakes.DownScanner"
    document = make_document(world)  # on-commit tasks do not run inside the test transaction
    stored = document.current_version.stored
    assert stored.scan_status == StoredObject.ScanStatus.PENDING
    client.force_login(world.registrar)
    page = client.get(reverse("files:version_download", args=[document.current_version.pk]))
    assert page.status_code == 409 and "being checked" in page.content.decode()
    with pytest.raises(ScannerUnavailable):
        services.stored_object_scan(stored_object_id=stored.pk)
    stored.refresh_from_db()
    assert stored.scan_status == StoredObject.ScanStatus.PENDING  # retried later, not guessed


class FakeClamd:
    """Speaks clamd's INSTREAM: reads `zINSTREAM\\0`, length-prefixed chunks, a zero chunk,
    then answers like clamd (FOUND when the stream contains the EICAR string)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.commands: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = conn.recv(n - len(data))
            if not part:
                raise ConnectionError
            data += part
        return data

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.commands.append(self._read(conn, len(b"zINSTREAM\0")))
                body = b""
                while True:
                    (size,) = struct.unpack("!L", self._read(conn, 4))
                    if size == 0:
                        break
                    body += self._read(conn, size)
                self.received.append(body)
                answer = (
                    b"stream: Eicar-Test-Signature FOUND\0" if EICAR in body else b"stream: OK\0"
                )
                conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.unit
def test_clamd_backend_speaks_instream() -> None:
    clamd = FakeClamd()
    try:
        scanner = ClamdScanner(address=f"tcp://127.0.0.1:{clamd.port}", timeout=5)
        big = [b"a" * 100_000, b"b" * 50_000]
        assert scanner.scan(big).clean
        verdict = scanner.scan([b"hello ", EICAR])
        assert not verdict.clean and verdict.signature == "Eicar-Test-Signature"
        assert clamd.commands == [b"zINSTREAM\0", b"zINSTREAM\0"]
        assert clamd.received == [b"".join(big), b"hello " + EICAR]
    finally:
        clamd.close()


@pytest.mark.unit
def test_clamd_errors_and_outages_are_not_verdicts() -> None:
    with pytest.raises(ScannerUnavailable):
        ClamdScanner.parse_reply("INSTREAM size limit exceeded. ERROR")
    from tests.helpers import free_port

    with pytest.raises(ScannerUnavailable, match="unreachable"):
        ClamdScanner(address=f"tcp://127.0.0.1:{free_port()}", timeout=1).scan([b"x"])
