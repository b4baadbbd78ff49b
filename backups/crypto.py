"""Encryption of backups: Google Tink's streaming AEAD (AES256-GCM-HKDF, 1 MiB segments).

Why Tink: it is a maintained, audited library whose streaming AEAD authenticates every
segment and the end of the stream, so a truncated, reordered or altered object fails to
decrypt instead of restoring garbage. Nothing cryptographic is built here; this module only
loads, creates and rotates the keyset and opens Tink's streams.

The keyset is a JSON file (settings.BACKUP_KEYSET_PATH, mode 0600) holding one or more keys.
New backups use the primary key; rotation adds a new primary and keeps the old keys, so every
older backup stays restorable. Each BackupRun records the primary key id it used.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import stat
import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

if TYPE_CHECKING:
    import tink
    from tink.proto import tink_pb2


@cache
def _tink() -> Any:
    """Tink, imported (7 MiB) and its streaming AEAD registered on first use: the Django
    side of a backup only needs this module's exceptions and constants."""
    import tink
    from tink import streaming_aead

    streaming_aead.register()
    return tink


def _streaming_aead() -> Any:
    _tink()
    from tink import streaming_aead

    return streaming_aead


def _token() -> Any:
    from tink import secret_key_access

    return secret_key_access.TOKEN


def _keyset_proto() -> Any:
    _tink()
    from tink.proto import tink_pb2

    return tink_pb2


def _key_template() -> Any:
    return _streaming_aead().streaming_aead_key_templates.AES256_GCM_HKDF_1MB


# Associated data binds a ciphertext to what it is: a dump cannot be passed off as a media
# object or a manifest, even under the same key.
AD_DATABASE = b"schoolhouse/backup/database/v1"
AD_MANIFEST = b"schoolhouse/backup/media-manifest/v1"


def ad_media_object(name: str) -> bytes:
    return b"schoolhouse/backup/media-object/v1/" + name.encode()


class BackupKeyError(Exception):
    """The keyset is missing, unreadable, or holds no key that can decrypt a backup."""


class BackupIntegrityError(Exception):
    """A backup object is corrupted or truncated: its checksum or authentication failed."""


@dataclass(frozen=True)
class KeyInfo:
    key_id: int
    status: str
    primary: bool


@dataclass(frozen=True)
class KeysetSummary:
    path: Path
    primary_key_id: int
    keys: list[KeyInfo]

    @property
    def key_ids(self) -> list[int]:
        return [k.key_id for k in self.keys]


def keyset_path() -> Path:
    # Imported here, not at the top: the streaming child process (backups.stream) uses this
    # module without setting up Django, and is given the keyset's path instead.
    from django.conf import settings

    return Path(settings.BACKUP_KEYSET_PATH)


_cache_lock = threading.Lock()
_cache: dict[tuple[str, int, int], tink.KeysetHandle] = {}


def _read_handle(path: Path) -> tink.KeysetHandle:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BackupKeyError(
            f"No backup keyset at {path}. Create one with `manage.py backup_keys create`, or "
            "point BACKUP_KEYSET_PATH at the keyset file kept with your secrets."
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # A key readable by other accounts on the host is a key that has leaked.
        raise BackupKeyError(
            f"The backup keyset {path} is readable by other users; run `chmod 600 {path}`."
        )
    cache_key = (str(path), st.st_mtime_ns, st.st_size)
    with _cache_lock:
        if cache_key in _cache:
            return _cache[cache_key]
    try:
        handle = _tink().json_proto_keyset_format.parse(path.read_text(), _token())
    except (_tink().TinkError, ValueError) as exc:
        raise BackupKeyError(f"The backup keyset {path} cannot be read: {exc}") from exc
    with _cache_lock:
        _cache.clear()
        _cache[cache_key] = handle
    return handle


def load_keyset(path: Path | None = None) -> tink.KeysetHandle:
    return _read_handle(path or keyset_path())


def keyset_summary(path: Path | None = None) -> KeysetSummary:
    path = path or keyset_path()
    info = load_keyset(path).keyset_info()
    return KeysetSummary(
        path=path,
        primary_key_id=info.primary_key_id,
        keys=[
            KeyInfo(
                key_id=k.key_id,
                status=_keyset_proto().KeyStatusType.Name(k.status),
                primary=k.key_id == info.primary_key_id,
            )
            for k in info.key_info
        ],
    )


def _write_keyset(path: Path, keyset: tink_pb2.Keyset) -> None:
    """Write atomically with mode 0600: a crash never leaves a half-written keyset."""
    handle = _tink().proto_keyset_format.parse(keyset.SerializeToString(), _token())
    text = _tink().json_proto_keyset_format.serialize(handle, _token())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".keyset-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _proto(handle: tink.KeysetHandle) -> tink_pb2.Keyset:
    raw = _tink().proto_keyset_format.serialize(handle, _token())
    return _keyset_proto().Keyset.FromString(raw)  # type: ignore[no-any-return]


def keyset_create(*, path: Path | None = None) -> KeysetSummary:
    """Create a new keyset with one key. Refuses to replace an existing file, because the
    backups made with it would become unreadable."""
    path = path or keyset_path()
    if path.exists():
        raise BackupKeyError(
            f"{path} already exists. Use `backup_keys rotate` to add a new key; replacing the "
            "file would make every backup made with it unreadable."
        )
    _write_keyset(path, _proto(_tink().new_keyset_handle(_key_template())))
    return keyset_summary(path)


def keyset_rotate(*, path: Path | None = None) -> KeysetSummary:
    """Add a fresh key and make it the primary. Old keys stay, so old backups stay readable."""
    path = path or keyset_path()
    keyset = _proto(load_keyset(path))
    fresh = _proto(_tink().new_keyset_handle(_key_template())).key[0]
    taken = {k.key_id for k in keyset.key}
    while fresh.key_id in taken:  # 32-bit ids: a clash is unlikely but cheap to rule out
        fresh.key_id = secrets.randbits(31) + 1
    keyset.key.append(fresh)
    keyset.primary_key_id = fresh.key_id
    _write_keyset(path, keyset)
    return keyset_summary(path)


def encrypting_stream(
    destination: BinaryIO, *, associated_data: bytes, path: Path | None = None
) -> tuple[BinaryIO, int]:
    """A writer that encrypts into `destination` with the primary key, and that key's id.

    Closing the returned stream writes the final authenticated segment and closes
    `destination`. `path`: the keyset file (default: settings.BACKUP_KEYSET_PATH).
    """
    handle = load_keyset(path)
    primitive = handle.primitive(_streaming_aead().StreamingAead)
    stream = primitive.new_encrypting_stream(destination, associated_data)
    return stream, handle.keyset_info().primary_key_id


class _DecryptingReader:
    """Tink's decrypting stream, with its errors turned into ones an operator can act on."""

    def __init__(self, stream: BinaryIO, *, key_id: int | None, summary: KeysetSummary) -> None:
        self._stream = stream
        self._key_id = key_id
        self._summary = summary

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except _tink().TinkError as exc:
            raise self._explain(exc) from exc

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()

    def _explain(self, exc: Exception) -> Exception:
        ids = self._summary.key_ids
        if self._key_id is not None and self._key_id not in ids:
            return BackupKeyError(
                f"Wrong key: this backup was encrypted with key id {self._key_id}, and the "
                f"keyset at {self._summary.path} holds only key ids {ids}. Put back the keyset "
                "that contains that key (rotation keeps old keys; a new keyset does not)."
            )
        if "No matching key" in str(exc) and self._key_id is None:
            return BackupKeyError(
                f"No key in the keyset at {self._summary.path} (key ids {ids}) can decrypt "
                "this backup, or its first segment is corrupted."
            )
        return BackupIntegrityError(
            f"The backup object failed authentication while decrypting ({exc}): it is "
            "corrupted or truncated."
        )


def decrypting_stream(
    source: BinaryIO, *, associated_data: bytes, key_id: int | None, path: Path | None = None
) -> BinaryIO:
    """A reader of the plaintext of `source`. Raises BackupKeyError when no key of the keyset
    fits (naming the key id the backup needs) and BackupIntegrityError when the object is
    corrupted or truncated. `path`: the keyset file (default: settings.BACKUP_KEYSET_PATH)."""
    summary = keyset_summary(path)
    if key_id is not None and key_id not in summary.key_ids:
        raise BackupKeyError(
            f"Wrong key: this backup was encrypted with key id {key_id}, and the keyset at "
            f"{summary.path} holds only key ids {summary.key_ids}. Put back the keyset that "
            "contains that key (rotation keeps old keys; a new keyset does not)."
        )
    primitive = load_keyset(summary.path).primitive(_streaming_aead().StreamingAead)
    stream = primitive.new_decrypting_stream(source, associated_data)
    return cast(BinaryIO, _DecryptingReader(stream, key_id=key_id, summary=summary))


def keyset_describe(summary: KeysetSummary) -> str:
    lines = [f"Keyset {summary.path}"]
    for key in summary.keys:
        mark = "primary" if key.primary else "older (kept to restore older backups)"
        lines.append(f"  key id {key.key_id:>10}  {key.status:<8} {mark}")
    lines.append(f"  read {datetime.datetime.now(tz=datetime.UTC):%Y-%m-%d %H:%M} UTC")
    return "\n".join(lines)


def keyset_json_for_display(path: Path | None = None) -> str:
    """The keyset's metadata (ids, status, type), never the key material."""
    summary = keyset_summary(path)
    return json.dumps(
        {
            "path": str(summary.path),
            "primary_key_id": summary.primary_key_id,
            "keys": [k.__dict__ for k in summary.keys],
        },
        indent=2,
    )
