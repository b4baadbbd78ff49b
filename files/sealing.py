"""Encryption at rest for sensitive documents on the local disk.

The cipher is Tink's streaming AEAD, AES256_GCM_HKDF_1MB: AES-256-GCM over 1 MB segments
with a per-file key derived by HKDF, as designed and reviewed by Google's Tink team. It
authenticates every segment and the end of the stream, so a truncated, reordered or altered
file fails to decrypt instead of yielding wrong bytes, and it encrypts and decrypts in
constant memory, which a 1 GB scan needs. We never assemble a construction of our own.

The storage key is the associated data: a ciphertext copied under another document's key
does not decrypt. The keyset may hold several keys (rotation): new files use the primary
key, old files still decrypt with the key that wrote them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

CHUNK = 1024 * 1024
_AAD_PREFIX = b"schoolhouse/document/"


class SealingUnavailable(Exception):
    """No encryption keyset is configured, so sensitive content cannot be stored locally."""


def _tink() -> tuple[Any, Any, Any]:
    import tink
    from tink import secret_key_access, streaming_aead

    streaming_aead.register()
    return tink, secret_key_access, streaming_aead


def keyset_generate() -> str:
    """A new keyset (JSON) with one AES256_GCM_HKDF_1MB key, for DOCUMENTS_ENCRYPTION_KEYSET."""
    tink, secret_key_access, streaming_aead = _tink()
    handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
    return str(tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN))


def keyset_parse(text: str) -> Any:
    """The streaming-AEAD primitive of a JSON keyset; ImproperlyConfigured when unusable."""
    tink, secret_key_access, streaming_aead = _tink()
    try:
        handle = tink.json_proto_keyset_format.parse(text, secret_key_access.TOKEN)
        return handle.primitive(streaming_aead.StreamingAead)
    except (tink.TinkError, ValueError, json.JSONDecodeError) as exc:
        raise ImproperlyConfigured(
            f"DOCUMENTS_ENCRYPTION_KEYSET is not a Tink streaming-AEAD keyset: {exc}"
        ) from exc


def _keyset_text() -> str:
    text = settings.DOCUMENTS_ENCRYPTION_KEYSET
    if text:
        return str(text)
    if settings.DEBUG or settings.TESTING:
        # A development convenience only (like the demo password): a keyset generated into
        # var/ the first time. Production must pass its own keyset from a secret store.
        path = Path(settings.VAR_DIR) / "documents-keyset.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            scratch.write_text(keyset_generate())
            scratch.chmod(0o600)
            # link() fails if another process published first: every process then reads
            # the same keyset, never one that a racing writer replaced.
            with contextlib.suppress(FileExistsError):
                os.link(scratch, path)
            scratch.unlink()
        return path.read_text()
    raise SealingUnavailable(
        "Sensitive documents cannot be stored on this server's disk because no encryption "
        "key is configured (DOCUMENTS_ENCRYPTION_KEYSET). Ask your administrator."
    )


@lru_cache(maxsize=4)
def _primitive(text: str) -> Any:
    return keyset_parse(text)


def primitive() -> Any:
    return _primitive(_keyset_text())


def associated_data(key: str) -> bytes:
    return _AAD_PREFIX + key.encode()


class _KeepOpen:
    """Tink closes the stream it writes into; the caller owns (and fsyncs) the file."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def write(self, data: Any) -> int:
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def encrypt_stream(*, source: IO[bytes], destination: IO[bytes], key: str) -> None:
    """Encrypt `source` into `destination` segment by segment (constant memory)."""
    with primitive().new_encrypting_stream(_KeepOpen(destination), associated_data(key)) as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)


def decrypt_chunks(*, source: IO[bytes], key: str) -> Iterator[bytes]:
    """The plaintext of `source` in chunks. Raises tink.TinkError on any tampering."""
    with primitive().new_decrypting_stream(source, associated_data(key)) as plain:
        while chunk := plain.read(CHUNK):
            yield chunk
