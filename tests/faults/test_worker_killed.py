"""A Celery worker SIGKILLed in the middle of a backup task (the OOM killer, a lost host):
the reaper task, run by the next worker, fails the run with a clear error and removes every
partial object; the next backup succeeds; the database is untouched.

Everything goes through real workers on a broker of the test's own (a throwaway
redis-server): the task is queued, consumed, killed and reaped as in production.
tests/backups/test_kill_and_reaper.py covers the same crash for `manage.py backup_now`."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import Celery

from backups.models import BackupRun
from tests.backups.conftest import s3_client
from tests.emulators import REGION, S3_KEY, S3_SECRET
from tests.faults.conftest import school_digests, wait_for
from tests.helpers import running_worker

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.xdist_group("faults"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def backup_env(monkeypatch, settings, tmp_path, throwaway_redis, moto_endpoint):
    """Backup settings for the workers (through the environment they inherit) and for this
    process (the assertions read the same destinations)."""
    from backups.crypto import keyset_create

    queue = f"faults-{uuid.uuid4().hex[:8]}"
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    keyset = tmp_path / "keys" / "backup-keyset.json"
    keyset_create(path=keyset)
    values = {
        "CELERY_BROKER_URL": throwaway_redis.url(2),
        "CELERY_RESULT_BACKEND": throwaway_redis.url(2),
        "CELERY_MAINTENANCE_QUEUE": queue,
        "REDIS_URL": throwaway_redis.url(1),
        "BACKUP_KEYSET_PATH": str(keyset),
        "BACKUP_DESTINATIONS": "local,s3",
        "BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
        "BACKUP_S3_BUCKET": bucket,
        "BACKUP_S3_ENDPOINT_URL": moto_endpoint,
        "BACKUP_S3_PREFIX": "backups/",
        "BACKUP_S3_REGION": REGION,
        "BACKUP_S3_ACCESS_KEY_ID": S3_KEY,
        "BACKUP_S3_SECRET_ACCESS_KEY": S3_SECRET,
        "BACKUP_S3_PART_SIZE": str(5 * 1024 * 1024),
        # Slow on purpose (one thread, the strongest level): a window in which to kill.
        "BACKUP_ZSTD_LEVEL": "19",
        "BACKUP_ZSTD_THREADS": "1",
        "BACKUP_HEARTBEAT_SECONDS": "0.5",
        "BACKUP_HEARTBEAT_TIMEOUT": "2",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings.BACKUP_KEYSET_PATH = keyset
    settings.BACKUP_LOCAL_DIR = tmp_path / "backups"
    settings.BACKUP_DESTINATIONS = ["local", "s3"]
    values["bucket"] = bucket
    values["queue"] = queue
    return values


def test_worker_killed_mid_backup_is_reaped_and_the_next_backup_succeeds(
    world, filler_table, backup_env, monkeypatch, moto_endpoint, tmp_path
):
    local = tmp_path / "backups"
    s3 = s3_client(moto_endpoint)
    bucket, queue = backup_env["bucket"], backup_env["queue"]
    # set_as_current=False: otherwise this app becomes Celery's current app for the rest of
    # the process, and every later shared_task call in this xdist worker goes to this test's
    # throwaway broker, long after it has been stopped.
    broker = Celery("faults-sender", broker=backup_env["CELERY_BROKER_URL"], set_as_current=False)
    broker.conf.result_backend = backup_env["CELERY_RESULT_BACKEND"]

    def send(task: str, **kwargs):
        return broker.send_task(task, kwargs=kwargs, queue=queue)

    before = school_digests()

    with running_worker(queue, tmp_path / "worker-1.log") as worker:
        send("backups.tasks.backup_database", trigger="manual")

        def mid_way() -> bool:
            """Both destinations are being written: a partial local file and an open S3
            multipart upload. (zstd's multi-threaded mode emits its first bytes only after
            a whole job of input, so the partial file may still be empty: on a busy machine
            that takes longer than the test should wait.)"""
            assert worker.poll() is None, (tmp_path / "worker-1.log").read_text()[-3000:]
            run = BackupRun.objects.filter(status=BackupRun.Status.RUNNING).first()
            return bool(
                run
                and run.object_key
                and list(local.rglob("*.partial-*"))
                and s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
            )

        wait_for(mid_way, timeout=120, what="the backup to be half-written", step=0.1)
        time.sleep(0.5)  # let pg_dump stream for a moment
        worker.kill()  # SIGKILL: no clean-up code of ours runs
        worker.wait(timeout=10)

    run = BackupRun.objects.get()
    assert run.status == BackupRun.Status.RUNNING  # nobody could record the death
    assert not (local / run.object_key).exists()
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    # Older than the heartbeat timeout (2 s here, 5 min by default): the reaper judges it dead.
    wait_for(lambda: time.time() - run.heartbeat_at.timestamp() > 2.5, timeout=10, what="staleness")

    # The next worker (fast settings now) reaps the dead run, then backs up successfully.
    monkeypatch.setenv("BACKUP_ZSTD_LEVEL", "1")
    monkeypatch.setenv("BACKUP_ZSTD_THREADS", "2")
    with running_worker(queue, tmp_path / "worker-2.log"):
        assert send("backups.tasks.reap_backups").get(timeout=60) == [run.pk]
        run.refresh_from_db()
        assert run.status == BackupRun.Status.FAILED
        assert "died or was stopped" in run.error and run.worker in run.error
        assert [p for p in local.rglob("*") if p.is_file()] == []  # partial file removed
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

        answer = send("backups.tasks.backup_database", trigger="manual").get(timeout=120)
    assert answer["status"] == BackupRun.Status.SUCCEEDED, answer
    good = BackupRun.objects.get(pk=answer["run"])
    assert (local / good.object_key).stat().st_size == good.stored_size
    head = s3.head_object(Bucket=bucket, Key=f"backups/{good.object_key}")
    assert head["ContentLength"] == good.stored_size
    assert good.row_counts[filler_table] == 300_000
    assert BackupRun.objects.filter(status=BackupRun.Status.SUCCEEDED).count() == 1
    # Nothing committed was lost or changed by the crash.
    assert school_digests() == before
