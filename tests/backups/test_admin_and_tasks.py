"""Admin actions (with confirmation pages) queue Celery tasks after commit; the signed,
audited download link; who may see backups at all; the schedules and the selectors."""

from __future__ import annotations

import datetime

import pytest
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audit.models import AuditEvent
from backups.models import BackupRun, RetentionPolicy
from backups.selectors import last_backup_failed, last_verified_backup_at
from backups.services import backups_prune
from tests.conftest import build_school
from tests.students.factories import district_admin

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def district(db):
    build_school("North", students=2)
    user = district_admin("district")
    return user


def test_run_backup_now_asks_first_then_queues_after_commit(
    client, district, local_backups
) -> None:
    client.force_login(district)
    url = reverse("admin:backups_backuprun_run")
    page = client.get(url)
    assert page.status_code == 200 and b"Yes, run the backup" in page.content
    assert BackupRun.objects.count() == 0
    answer = client.post(url, {"kind": "database"})
    assert answer.status_code == 302
    run = BackupRun.objects.get()  # the eager task ran once the request's writes committed
    assert run.status == BackupRun.Status.SUCCEEDED and run.trigger == "manual"
    assert run.requested_by == district

    verify_url = reverse("admin:backups_backuprun_verify", args=[run.pk])
    assert b"Yes, verify" in client.get(verify_url).content
    client.post(verify_url)
    run.refresh_from_db()
    assert run.status == BackupRun.Status.VERIFIED
    changelist = client.get(reverse("admin:backups_backuprun_changelist"))
    assert b"Run backup now" in changelist.content and b"verified" in changelist.content


def test_download_link_is_signed_short_lived_personal_and_audited(
    client, district, local_backups, settings
) -> None:
    from backups.services import backup_database_run

    run = backup_database_run()
    client.force_login(district)
    page = client.get(reverse("admin:backups_backuprun_change", args=[run.pk])).content.decode()
    link_form = reverse("admin:backups_backuprun_download_link", args=[run.pk])
    # The download button's form stands on its own, after the (read-only) change form.
    before = page[: page.index(f'action="{link_form}"')]
    assert before.count("<form") - before.count("</form>") == 1  # only itself is open
    answer = client.post(link_form)
    link = answer["Location"]
    download = client.get(link)
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert body == (local_backups / run.object_key).read_bytes()
    assert AuditEvent.objects.filter(action="backup_download_link").count() == 1
    assert AuditEvent.objects.filter(action="backup_download").count() == 1

    other = district_admin("district-2")
    client.force_login(other)
    assert client.get(link).status_code == 403  # made for someone else
    client.force_login(district)
    token = link.rstrip("/").rsplit("/", 1)[-1]
    assert client.get(link.replace(token, token[:-2] + "xx")).status_code == 403
    settings.BACKUP_DOWNLOAD_LINK_MAX_AGE = -1
    assert client.get(link).status_code == 403  # expired
    assert signing.loads(token, salt="backups.download")["run"] == run.pk


def test_school_staff_never_see_backups(client, district) -> None:
    world = build_school("South", students=1)
    client.force_login(world.admin)
    assert client.get(reverse("admin:backups_backuprun_changelist")).status_code in (302, 403)
    assert client.get(reverse("admin:backups_backuprun_run")).status_code in (302, 403)


def test_retention_prunes_per_destination_and_keeps_the_newest(local_backups) -> None:
    from backups.services import backup_database_run

    runs = [backup_database_run() for _ in range(3)]
    base = timezone.now() - datetime.timedelta(days=10)
    for i, run in enumerate(runs):  # three different days
        BackupRun.objects.filter(pk=run.pk).update(started_at=base + datetime.timedelta(days=i))
    RetentionPolicy.objects.create(destination="local", keep_daily=1, keep_weekly=0, keep_monthly=0)
    report = backups_prune()
    assert report.kept["local"] == [runs[2].pk] and report.deleted["local"] == [
        runs[0].pk,
        runs[1].pk,
    ]
    for run in runs[:2]:
        run.refresh_from_db()
        assert run.pruned_at and not (local_backups / run.object_key).exists()
    assert (local_backups / runs[2].object_key).exists()


def test_selectors_for_the_health_check(local_backups) -> None:
    from backups.services import backup_database_run, backup_verify

    assert last_verified_backup_at() is None and last_backup_failed() is False
    run = backup_verify(run=backup_database_run())
    assert last_verified_backup_at() == run.started_at
    assert last_backup_failed() is False
    BackupRun.objects.create(
        kind="database", status="failed", started_at=timezone.now(), finished_at=timezone.now()
    )
    assert last_backup_failed() is True


def test_schedules_are_written_once_and_stay_editable() -> None:
    from django.core.management import call_command

    call_command("setup_periodic_tasks")
    tasks = set(
        PeriodicTask.objects.filter(task__startswith="backups.").values_list("task", flat=True)
    )
    assert tasks == {
        "backups.tasks.backup_database",
        "backups.tasks.backup_media",
        "backups.tasks.prune_backups",
        "backups.tasks.verify_backup",
        "backups.tasks.reap_backups",
    }
    nightly = PeriodicTask.objects.get(task="backups.tasks.backup_database")
    nightly.enabled = False
    nightly.save()
    call_command("setup_periodic_tasks")
    assert PeriodicTask.objects.get(pk=nightly.pk).enabled is False


def test_a_real_worker_runs_the_backup_task(live_celery, local_backups, settings, tmp_path) -> None:
    """The task through the Redis broker to a worker process, as beat would send it."""
    import subprocess
    import uuid

    from backups.tasks import backup_database
    from tests.helpers import REPO, child_database_url, subprocess_env

    queue = f"backups-test-{uuid.uuid4().hex[:8]}"
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    worker = subprocess.Popen(
        ["celery", "-A", "school_site", "worker", "-Q", queue, "--pool", "solo",
         "--hostname", f"{queue}@%h", "--loglevel", "INFO"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env(
            DATABASE_URL=child_database_url(),
            DB_POOL="false",
            SCHOOLHOUSE_TESTING="true",
            BACKUP_KEYSET_PATH=str(settings.BACKUP_KEYSET_PATH),
            BACKUP_LOCAL_DIR=str(local_backups),
            BACKUP_DESTINATIONS="local",
        ),
    )  # fmt: skip
    try:
        answer = backup_database.apply_async(kwargs={"trigger": "schedule"}, queue=queue)
        result = answer.get(timeout=90)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        log.close()
    run = BackupRun.objects.get(pk=result["run"])
    assert result["status"] == run.status == BackupRun.Status.SUCCEEDED
    assert run.trigger == "schedule" and (local_backups / run.object_key).exists()
