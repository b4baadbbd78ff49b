"""A backup process killed with SIGKILL mid-way leaves no `succeeded` run and no object under
its name anywhere; the reaper then fails the run and removes the partial leftovers."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import time

import pytest
from django.utils import timezone

from backups.models import BackupRun
from backups.services import backup_runs_reap
from tests.backups.conftest import S3_KEY, S3_SECRET
from tests.helpers import REPO, child_database_url, maintenance_cursor, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def filler():
    """About 60 MB of text in the test database: at zstd level 19 the child needs many
    seconds for it, a window in which to kill it."""
    with maintenance_cursor() as cur:  # the application's role creates no tables
        cur.execute(
            "CREATE TABLE backup_kill_filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text)"
            " || md5((g * 13)::text) AS junk FROM generate_series(1, 500000) g"
        )
    yield
    with maintenance_cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS backup_kill_filler")


def test_sigkill_mid_backup_leaves_nothing_and_the_reaper_fails_the_run(
    filler, clouds, local_backups, settings, tmp_path
) -> None:
    env = subprocess_env(
        DATABASE_URL=child_database_url(),
        DB_POOL="false",
        SCHOOLHOUSE_TESTING="true",
        BACKUP_KEYSET_PATH=str(settings.BACKUP_KEYSET_PATH),
        BACKUP_DESTINATIONS="local,s3",
        BACKUP_LOCAL_DIR=str(local_backups),
        BACKUP_S3_BUCKET=clouds.s3_bucket,
        BACKUP_S3_ENDPOINT_URL=clouds.s3_endpoint,
        BACKUP_S3_PREFIX="backups/",
        BACKUP_S3_REGION="us-east-1",
        BACKUP_S3_ACCESS_KEY_ID=S3_KEY,
        BACKUP_S3_SECRET_ACCESS_KEY=S3_SECRET,
        BACKUP_S3_PART_SIZE=str(5 * 1024 * 1024),
        BACKUP_ZSTD_LEVEL="19",
        BACKUP_ZSTD_THREADS="1",
        BACKUP_HEARTBEAT_SECONDS="0.5",
    )
    log = open(tmp_path / "child.log", "w")  # noqa: SIM115
    child = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "manage.py", "backup_now", "-v", "0"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Wait until it is visibly mid-way: a run row, and bytes in a partial local file.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = BackupRun.objects.filter(status=BackupRun.Status.RUNNING).first()
            partials = [p for p in local_backups.rglob("*.partial-*") if p.stat().st_size > 0]
            if run and run.object_key and partials:
                break
            assert child.poll() is None, (tmp_path / "child.log").read_text()
            time.sleep(0.1)
        else:
            pytest.fail("the child never started writing")
        os.killpg(child.pid, signal.SIGKILL)  # the child and its pg_dump
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        log.close()

    run.refresh_from_db()
    assert run.status == BackupRun.Status.RUNNING
    assert not BackupRun.objects.filter(status=BackupRun.Status.SUCCEEDED).exists()
    # No object under its final name anywhere: only the leftovers of an unfinished write.
    assert not (local_backups / run.object_key).exists()
    assert f"backups/{run.object_key}" not in clouds.s3_keys()

    # The reaper, a little later: the lock is free (the child's session died with it).
    reaped = backup_runs_reap(now=timezone.now() + datetime.timedelta(seconds=31))
    assert [r.pk for r in reaped] == [run.pk]
    run.refresh_from_db()
    assert run.status == BackupRun.Status.FAILED and "died" in run.error
    assert list(local_backups.rglob("*.partial-*")) == []
    assert clouds.s3_uploads() == [] and clouds.s3_keys() == set()
    assert backup_runs_reap() == []  # nothing left to reap


def test_the_reaper_leaves_a_live_run_alone_and_fails_a_silent_one(local_backups, settings):
    from backups.locking import backup_lock
    from backups.services import backup_run_start

    with backup_lock():
        run = backup_run_start(kind=BackupRun.Kind.DATABASE, trigger="manual")
        # Held lock, fresh heartbeat: alive.
        assert backup_runs_reap(now=timezone.now() + datetime.timedelta(seconds=40)) == []
        # Held lock, but no heartbeat for longer than the timeout: a hung worker.
        late = timezone.now() + datetime.timedelta(seconds=settings.BACKUP_HEARTBEAT_TIMEOUT + 1)
        assert [r.pk for r in backup_runs_reap(now=late)] == [run.pk]
