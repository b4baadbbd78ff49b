"""`manage.py monitor_system`: exit codes and JSON, in-process and as a real child process
with the database unreachable, and all green with a real Celery worker."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from monitoring.models import AlertState
from monitoring.services import heartbeat_record
from tests.helpers import (
    PYTHON,
    REPO,
    child_database_url,
    free_port,
    running_worker,
    subprocess_env,
)
from tests.monitoring.conftest import BOTH_DATABASES


def run_command(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        call_command("monitor_system", *args)
    return int(exited.value.code), capsys.readouterr().out


@pytest.mark.unit
@pytest.mark.django_db(databases=BOTH_DATABASES)
def test_exit_codes_and_json(capsys, settings, backups_contract) -> None:
    backups_contract()  # no backups reported yet
    code, out = run_command(capsys, "--json")
    report = json.loads(out)
    assert code == 1  # no worker, no beat heartbeat, no backup: wrong, but not critical
    assert report["status"] == "warning"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["database"]["state"] == "ok" and checks["database"]["critical"] is True
    assert checks["celery"]["state"] == "failed"
    assert checks["backup"] == checks["backup"] | {
        "state": "warning",
        "message": "no backup recorded",
    }
    assert report["alerts"] == []

    code, out = run_command(capsys)
    assert code == 1
    assert out.startswith("Schoolhouse: WARNING")
    assert "FAILED" in out and "celery" in out and "no backup recorded" in out

    settings.MONITORING_CRITICAL_CHECKS = ["database", "migrations", "celery"]
    code, out = run_command(capsys, "--json")
    assert code == 2 and json.loads(out)["status"] == "critical"


def _child(env: dict[str, str], *args: str) -> tuple[int, dict]:
    out = subprocess.run(
        [PYTHON, "manage.py", "monitor_system", "--json", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return out.returncode, json.loads(out.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def _mails(folder: Path, title: str) -> list[str]:
    subjects = []
    for message in folder.glob("*.log"):
        subjects += [
            line for line in message.read_text().splitlines() if line.startswith("Subject:")
        ]
    return [s for s in subjects if title in s]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_database_down_exits_2_and_alerts_once_then_recovers(tmp_path, throwaway_redis) -> None:
    mail_dir = tmp_path / "mail"
    common = {
        "SCHOOLHOUSE_TESTING": "true",
        "DB_POOL": "false",
        # The alert state of the outage lives in the cache: a Redis of this test's own.
        "REDIS_URL": throwaway_redis,
        "EMAIL_URL": f"filemail:///{mail_dir}",
        "ADMINS": "Ops:ops@example.org",
        "MONITORING_CELERY_PING_TIMEOUT": "0.2",
        "LOG_LEVEL": "CRITICAL",
    }
    down = subprocess_env(
        DATABASE_URL=f"postgres://schoolhouse:x@127.0.0.1:{free_port()}/schoolhouse", **common
    )
    code, report = _child(down, "--alert")
    assert code == 2 and report["status"] == "critical"
    database = next(c for c in report["checks"] if c["name"] == "database")
    assert database["state"] == "failed" and database["critical"]
    assert ["database_unreachable", "opened"] in report["alerts"]
    code, report = _child(down, "--alert")
    assert code == 2
    assert "database_unreachable" not in {name for name, _ in report["alerts"]}
    assert len(_mails(mail_dir, "Database unreachable")) == 1  # two failing runs, one e-mail

    up = subprocess_env(DATABASE_URL=child_database_url(), **common)
    code, report = _child(up, "--alert")
    assert report["checks"][0]["state"] == "ok"
    assert ["database_unreachable", "resolved"] in report["alerts"]
    subjects = _mails(mail_dir, "Database unreachable")
    assert len(subjects) == 2 and "RESOLVED" in subjects[1] + subjects[0]
    state = AlertState.objects.get(name="database_unreachable")
    assert not state.is_open and state.incidents == 1


@pytest.fixture
def worker(tmp_path, settings):
    """A real worker consuming the only queue the platform routes to in this test."""
    queue = f"test-monitor-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.CELERY_TASK_ROUTES = {}
    with running_worker(queue, tmp_path / "worker.log"):
        yield queue


@pytest.mark.integration
@pytest.mark.django_db(databases=BOTH_DATABASES)
def test_all_green_with_a_real_worker_exits_0(capsys, settings, worker, backups_contract):
    from monitoring.checks import health_report

    heartbeat_record(name="celery-beat")
    backups_contract(last_verified_backup_at=timezone.now)
    settings.MONITORING_DISK_WARN_PERCENT = 100  # this machine's disk and memory are not
    settings.MONITORING_MEMORY_WARN_PERCENT = 100  # what the test is about
    deadline = time.monotonic() + 60
    while health_report().outcome("celery").state != "ok":  # the worker is starting
        assert time.monotonic() < deadline, "the worker never answered the ping"
        time.sleep(0.5)
    code, out = run_command(capsys, "--json")
    report = json.loads(out)
    assert [c for c in report["checks"] if c["state"] != "ok"] == []
    assert code == 0 and report["status"] == "ok"
    assert AlertState.objects.count() == 0  # --alert was not given
