"""Database backups against the real PostgreSQL and the S3/GCS emulators: every copy is
confirmed, a restore gives back identical rows, verification catches corruption, truncation
and the wrong key, and a restore refuses what it cannot do safely."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from backups.crypto import BackupKeyError, keyset_create
from backups.models import BackupRun
from backups.pipeline import pg_connect
from backups.services import (
    RestoreRefused,
    backup_database_run,
    backup_restore,
    backup_verify,
)
from backups.services.verify import scratch_database
from tests.backups.conftest import live_params, pg_url, table_digests, webhook_recorder
from tests.conftest import build_school

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Written after the dump by the backup itself (its own row, its audit events).
MOVING_TABLES = {"backups_backuprun", "audit_auditevent"}


def _local_object(root: Path, run: BackupRun) -> Path:
    return root / run.object_key


@pytest.fixture
def school(db) -> object:
    return build_school("North", students=12)


def test_backup_to_every_destination_then_restore_gives_identical_rows(
    school, clouds, local_backups
) -> None:
    run = backup_database_run()
    assert run.status == BackupRun.Status.SUCCEEDED, run.error
    assert {d["name"] for d in run.destinations} == {"local", "s3", "gcs"}
    assert all(d["confirmed"] and d["sha256"] == run.sha256 for d in run.destinations)
    assert run.stored_size and run.raw_size and run.key_id
    assert run.row_counts["students_student"] == 13
    assert "students" in run.migrations and run.schema_hash
    # The same object under the same name everywhere, plus its sidecar; nothing partial.
    assert _local_object(local_backups, run).stat().st_size == run.stored_size
    assert {f"backups/{run.object_key}", f"backups/{run.object_key}.json"} == clouds.s3_keys()
    assert {f"backups/{run.object_key}", f"backups/{run.object_key}.json"} == clouds.gcs_keys()
    assert clouds.s3_uploads() == []
    sidecar = json.loads((local_backups / (run.object_key + ".json")).read_text())
    assert sidecar["sha256"] == run.sha256 and sidecar["key_id"] == run.key_id

    source = table_digests(live_params(), skip=MOVING_TABLES)
    with scratch_database(live_params(), label="t") as target:
        # The restore reads from the first destination; make it a cloud one.
        run.destinations = [d for d in run.destinations if d["name"] == "s3"]
        url = pg_url(target)
        outcome = backup_restore(run=run, target_url=url)
        assert outcome.database == target["dbname"]
        restored = table_digests(target, skip=MOVING_TABLES)
    assert restored == source
    assert AuditEvent.objects.filter(action="backup_restore").count() == 1


def test_verification_restores_into_a_scratch_database_and_compares_counts(
    school, local_backups
) -> None:
    run = backup_database_run()
    run = backup_verify(run=run)
    assert run.status == BackupRun.Status.VERIFIED, run.verification_report
    report = run.verification_report
    assert report["destinations"]["local"]["sha256_ok"] is True
    assert report["toc_entries"] > 50
    assert report["rows"] == sum(run.row_counts.values())
    # The scratch database is gone.
    with pg_connect({**live_params(), "dbname": "postgres"}) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", [report["scratch_database"]]
        ).fetchone()[0]
    assert left == 0


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupted_or_truncated_object_fails_verification(school, local_backups, damage) -> None:
    run = backup_database_run()
    path = _local_object(local_backups, run)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-4096:]
    path.write_bytes(bytes(data))
    run = backup_verify(run=run)
    assert run.verification == BackupRun.Verification.FAILED
    assert run.status == BackupRun.Status.SUCCEEDED  # not promoted to verified
    assert "corrupted or truncated" in run.verification_report["error"]


def test_the_wrong_key_fails_with_a_clear_message(
    school, local_backups, settings, tmp_path
) -> None:
    run = backup_database_run()
    settings.BACKUP_KEYSET_PATH = tmp_path / "replaced-keyset.json"
    keyset_create()
    with scratch_database(live_params(), label="t") as target:
        url = pg_url(target)
        with pytest.raises(BackupKeyError, match=f"encrypted with key id {run.key_id}"):
            backup_restore(run=run, target_url=url)
    run = backup_verify(run=run)
    assert run.verification == BackupRun.Verification.FAILED
    assert "Wrong key" in run.verification_report["error"]


def test_restore_refuses_a_non_empty_target_and_a_newer_schema(school, local_backups) -> None:
    run = backup_database_run()
    with pytest.raises(RestoreRefused, match="not empty"):
        backup_restore(run=run)  # the live database
    run.migrations = {**run.migrations, "students": [*run.migrations["students"], "0099_future"]}
    with pytest.raises(RestoreRefused, match="newer version of Schoolhouse.*students.0099_future"):
        backup_restore(run=run, force=True)
    with pytest.raises(CommandError, match="No backup"):
        call_command("restore_backup", "12345")


def test_commands_back_up_list_and_verify(school, local_backups, capsys) -> None:
    call_command("backup_now")
    out = capsys.readouterr().out
    assert "succeeded" in out and "confirmed at local" in out
    call_command("list_backups")
    assert "database succeeded" in capsys.readouterr().out
    call_command("verify_backup", "latest")
    assert "verified" in capsys.readouterr().out
    assert BackupRun.objects.get().status == BackupRun.Status.VERIFIED


def test_a_failing_destination_leaves_no_object_anywhere_and_alerts(
    school, clouds, local_backups, settings
) -> None:
    settings.BACKUP_GCS_BUCKET = f"missing-{uuid.uuid4().hex[:8]}"  # writes there fail
    settings.ADMINS = [("Ops", "ops@example.org")]
    posted: list[dict] = []
    settings.MONITORING_ALERT_WEBHOOK_URL = webhook_recorder(posted)
    run = backup_database_run()
    assert run.status == BackupRun.Status.FAILED
    assert "gcs" in run.error.lower() or "404" in run.error or "bucket" in run.error.lower()
    assert clouds.s3_keys() == set() and clouds.s3_uploads() == []
    assert [p for p in local_backups.rglob("*") if p.is_file()] == []
    from django.core import mail

    assert any(f"backup #{run.pk} failed" in m.subject for m in mail.outbox)
    # The one alert path (monitoring's notifier): the same webhook every other alert uses.
    assert posted and posted[0]["alert"] == "backup_failed" and posted[0]["state"] == "firing"
    assert f"#{run.pk} failed" in posted[0]["summary"]


def test_restore_from_a_destination_alone_when_the_run_history_is_lost(school, local_backups):
    from backups.selectors import backup_run_from_destination

    made = backup_database_run()
    BackupRun.objects.all().delete()  # the history is gone with the database
    found = backup_run_from_destination("latest", destination_name="local")
    assert found is not None and (found.pk, found.sha256) == (made.pk, made.sha256)
    with scratch_database(live_params(), label="t") as target:
        url = pg_url(target)
        backup_restore(run=found, target_url=url)
        with pg_connect(target) as conn:
            count = conn.execute("SELECT count(*) FROM students_student").fetchone()[0]
    assert count == made.row_counts["students_student"]
