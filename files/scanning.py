"""The virus-scanner hook. Off by default (DOCUMENTS_SCANNER empty).

A scanner is any class with `scan(chunks) -> ScanVerdict`, named by dotted path in
DOCUMENTS_SCANNER. When one is configured every new stored object waits in "pending" until a
Celery task has scanned it; downloads are refused until then, and an infected object is
quarantined (every version holding those bytes, in any document, is blocked).

`ClamdScanner` speaks clamd's documented INSTREAM protocol over TCP or a Unix socket:
the command `zINSTREAM\\0`, then chunks each prefixed by its length as a 4-byte big-endian
integer, then a zero-length chunk; clamd answers `stream: OK`, `stream: <name> FOUND` or
`... ERROR`. The Python clamd client libraries on PyPI have been unmaintained since 2014-2017,
and the protocol is a dozen lines, so we speak it directly.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class ScanVerdict:
    clean: bool
    signature: str = ""


class ScannerUnavailable(Exception):
    """The scanner could not give a verdict (down, timed out, or said ERROR); try later."""


class Scanner(Protocol):
    def scan(self, chunks: Iterable[bytes]) -> ScanVerdict: ...


def get_scanner() -> Scanner | None:
    path = settings.DOCUMENTS_SCANNER
    if not path:
        return None
    return import_string(path)()  # type: ignore[no-any-return]


class ClamdScanner:
    """clamd over `tcp://host:port` or `unix:///path/to/clamd.ctl` (DOCUMENTS_CLAMD_ADDRESS)."""

    # clamd's StreamMaxLength defaults to 25 MB; it answers "size limit exceeded" beyond it.
    # Raise it in clamd.conf to at least DOCUMENTS_MAX_UPLOAD_BYTES.
    chunk_size = 64 * 1024

    def __init__(self, address: str | None = None, timeout: float | None = None) -> None:
        self.address = address or settings.DOCUMENTS_CLAMD_ADDRESS
        self.timeout = timeout if timeout is not None else settings.DOCUMENTS_CLAMD_TIMEOUT

    def _connect(self) -> socket.socket:
        parts = urlsplit(self.address)
        try:
            if parts.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(parts.path)
            elif parts.scheme == "tcp" and parts.hostname and parts.port:
                sock = socket.create_connection((parts.hostname, parts.port), self.timeout)
            else:
                raise ScannerUnavailable(f"Bad clamd address {self.address!r}")
        except OSError as exc:
            raise ScannerUnavailable(f"clamd at {self.address} is unreachable: {exc}") from exc
        return sock

    def scan(self, chunks: Iterable[bytes]) -> ScanVerdict:
        sock = self._connect()
        try:
            sock.sendall(b"zINSTREAM\0")
            for chunk in chunks:
                for start in range(0, len(chunk), self.chunk_size):
                    piece = chunk[start : start + self.chunk_size]
                    sock.sendall(struct.pack("!L", len(piece)) + piece)
            sock.sendall(struct.pack("!L", 0))
            reply = b""
            while not reply.endswith(b"\0"):
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
        except OSError as exc:
            raise ScannerUnavailable(f"clamd at {self.address} failed: {exc}") from exc
        finally:
            sock.close()
        return self.parse_reply(reply.rstrip(b"\0").decode("utf-8", "replace"))

    @staticmethod
    def parse_reply(reply: str) -> ScanVerdict:
        # "stream: OK" | "stream: Eicar-Test-Signature FOUND" | "INSTREAM size limit ... ERROR"
        body = reply.split(":", 1)[1].strip() if ":" in reply else reply.strip()
        if body == "OK":
            return ScanVerdict(clean=True)
        if body.endswith(" FOUND"):
            return ScanVerdict(clean=False, signature=body.removesuffix(" FOUND").strip()[:200])
        raise ScannerUnavailable(f"clamd could not scan the file: {reply.strip() or 'no answer'}")
