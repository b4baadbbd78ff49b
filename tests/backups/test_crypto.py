"""The keyset: create, rotate, show; old backups stay readable; the wrong key is named."""

from __future__ import annotations

import io
import json

import pytest

from backups import crypto

pytestmark = pytest.mark.unit


def _encrypt(data: bytes) -> tuple[bytes, int]:
    sink = io.BytesIO()
    sink.close = lambda: None  # type: ignore[method-assign]  # keep the bytes after Tink closes it
    stream, key_id = crypto.encrypting_stream(sink, associated_data=crypto.AD_DATABASE)
    stream.write(data)
    stream.close()
    return sink.getvalue(), key_id


def _decrypt(blob: bytes, key_id: int | None) -> bytes:
    reader = crypto.decrypting_stream(
        io.BytesIO(blob), associated_data=crypto.AD_DATABASE, key_id=key_id
    )
    return reader.read()


def test_create_writes_a_private_keyset_and_refuses_to_replace_it(keyset) -> None:
    assert keyset.stat().st_mode & 0o777 == 0o600
    summary = crypto.keyset_summary()
    assert len(summary.keys) == 1 and summary.keys[0].primary
    with pytest.raises(crypto.BackupKeyError, match="already exists"):
        crypto.keyset_create()


def test_rotation_keeps_old_backups_restorable(keyset) -> None:
    data = b"attendance " * 50_000
    old_blob, old_id = _encrypt(data)
    summary = crypto.keyset_rotate()
    assert summary.primary_key_id != old_id
    assert set(summary.key_ids) == {old_id, summary.primary_key_id}
    new_blob, new_id = _encrypt(data)
    assert new_id == summary.primary_key_id
    assert _decrypt(old_blob, old_id) == data
    assert _decrypt(new_blob, new_id) == data


def test_a_new_keyset_cannot_read_old_backups_and_says_which_key_is_needed(
    keyset, settings, tmp_path
) -> None:
    blob, key_id = _encrypt(b"grades")
    settings.BACKUP_KEYSET_PATH = tmp_path / "other.json"
    crypto.keyset_create()
    with pytest.raises(crypto.BackupKeyError, match=f"encrypted with key id {key_id}"):
        _decrypt(blob, key_id)
    # Without the recorded id (a bare object), Tink's own failure is still explained.
    with pytest.raises(crypto.BackupKeyError, match="No key in the keyset"):
        _decrypt(blob, None)


def test_tampering_and_truncation_fail_authentication(keyset) -> None:
    data = bytes(range(256)) * 20_000  # several 1 MiB segments
    blob, key_id = _encrypt(data)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    with pytest.raises(crypto.BackupIntegrityError):
        _decrypt(bytes(flipped), key_id)
    with pytest.raises(crypto.BackupIntegrityError):
        _decrypt(blob[: len(blob) - 100], key_id)


def test_a_keyset_readable_by_others_is_refused(keyset) -> None:
    keyset.chmod(0o644)
    with pytest.raises(crypto.BackupKeyError, match="chmod 600"):
        crypto.keyset_summary()


def test_show_never_prints_key_material(keyset, capsys) -> None:
    from django.core.management import call_command

    call_command("backup_keys", "show")
    out = capsys.readouterr().out
    material = json.loads(keyset.read_text())["key"][0]["keyData"]["value"]
    assert "primary" in out and material not in out
