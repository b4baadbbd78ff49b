"""The embedded mode, as `make run` uses it with no PostgreSQL or Redis configured: SQLite,
the file cache and Celery's filesystem broker, in real child processes."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.helpers import PYTHON, REPO, subprocess_env

pytestmark = pytest.mark.integration

SMOKE = """
import django, json
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
from students.demo import demo_password
from students.models import Student, Section
from django.http import HttpRequest
c = Client()
# A registrar: administrators would first be asked for their two-factor code.
r = HttpRequest(); r.META["REMOTE_ADDR"] = "127.0.0.1"  # django-axes judges by address
assert c.login(request=r, username="registrar-north", password=demo_password())
out = {}
for url in ["/dashboard/", "/students/?q=a", f"/students/{Student.objects.first().pk}/",
            "/classes/", f"/classes/{Section.objects.first().pk}/attendance/"]:
    out[url] = c.get(url).status_code
print(json.dumps(out))
"""

ROUND_TRIP = """
import django
django.setup()
from monitoring.tasks import beat_heartbeat
print("RESULT", beat_heartbeat.delay().get(timeout=60))
"""


@pytest.fixture
def embedded_env(tmp_path):
    return subprocess_env(
        DATABASE_URL=None,
        REDIS_URL=None,
        CELERY_BROKER_URL=None,
        CELERY_RESULT_BACKEND=None,
        DEBUG="true",
        SCHOOLHOUSE_TESTING=None,
        SCHOOLHOUSE_ENV_FILE="/nonexistent",
        SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
        DEMO_PASSWORD="embedded-demo-password",
        LOG_LEVEL="WARNING",
    )


def run(args: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_embedded_mode_migrates_seeds_and_serves_pages(embedded_env, tmp_path) -> None:
    run([PYTHON, "manage.py", "migrate", "--noinput"], embedded_env)
    assert (tmp_path / "var" / "db.sqlite3").exists()
    run([PYTHON, "manage.py", "setup_periodic_tasks"], embedded_env)
    seeded = run(
        [
            PYTHON,
            "manage.py",
            "seed_demo",
            "--schools",
            "2",
            "--students",
            "60",
            "--attendance-days",
            "5",
        ],
        embedded_env,
    )
    assert "2 schools, 120 students" in seeded.stdout
    again = run([PYTHON, "manage.py", "seed_demo", "--if-empty"], embedded_env)
    assert "nothing to do" in again.stdout
    accounts = run([PYTHON, "manage.py", "demo_accounts"], embedded_env)
    assert "embedded-demo-password" in accounts.stdout and "principal-north" in accounts.stdout
    smoke = run([PYTHON, "-c", SMOKE], embedded_env)
    statuses = json.loads(smoke.stdout.strip().splitlines()[-1])
    assert set(statuses.values()) == {200}, statuses


def test_embedded_celery_round_trip_over_the_filesystem_broker(embedded_env, tmp_path) -> None:
    run([PYTHON, "manage.py", "migrate", "--noinput"], embedded_env)
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            "celery",
            "-A",
            "school_site",
            "worker",
            "-Q",
            "default",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
        ],
        cwd=REPO,
        env=embedded_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        started = time.monotonic()
        out = run([PYTHON, "-c", ROUND_TRIP], embedded_env, timeout=120)
        assert "RESULT" in out.stdout
        assert time.monotonic() - started < 90
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        log.close()
