"""The settings module in each mode it supports, read by real child processes."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from tests.helpers import PYTHON, REPO, subprocess_env

pytestmark = pytest.mark.unit

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "options": db.get("OPTIONS", {}), "health": db["CONN_HEALTH_CHECKS"],
    "cache": s.CACHES["default"]["BACKEND"],
    "ignore_exceptions": s.CACHES["default"].get("OPTIONS", {}).get("IGNORE_EXCEPTIONS"),
    "session": s.SESSION_ENGINE, "broker": s.CELERY_BROKER_URL,
    "scheduler": s.CELERY_BEAT_SCHEDULER, "debug": s.DEBUG,
    "toolbar": "debug_toolbar" in s.INSTALLED_APPS,
    "soft_limit": s.CELERY_TASK_SOFT_TIME_LIMIT, "routes": s.CELERY_TASK_ROUTES,
}, default=str))
"""


def read_settings(tmp_path, **env: str) -> dict:
    base = {
        "DATABASE_URL": None,
        "REDIS_URL": None,
        "CELERY_BROKER_URL": None,
        "CELERY_RESULT_BACKEND": None,
        "SCHOOLHOUSE_TESTING": None,
        "SCHOOLHOUSE_VAR_DIR": str(tmp_path / "var"),
        "SCHOOLHOUSE_ENV_FILE": "/nonexistent",
    }
    base.update(env)
    out = subprocess.run(
        [PYTHON, "-c", PRINT_SETTINGS],
        cwd=REPO,
        env=subprocess_env(**base),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedded_defaults_need_no_server(tmp_path) -> None:
    s = read_settings(tmp_path, DEBUG="true")
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["cache"] == "django.core.cache.backends.filebased.FileBasedCache"
    assert s["broker"].startswith("filesystem://")
    assert s["session"] == "django.contrib.sessions.backends.cached_db"
    assert s["scheduler"] == "django_celery_beat.schedulers:DatabaseScheduler"
    assert s["toolbar"] is True  # DEBUG only
    assert (tmp_path / "var" / "broker" / "queue").is_dir()


def test_postgres_and_redis_from_env(tmp_path) -> None:
    s = read_settings(
        tmp_path,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://u:p@db.internal:5432/school",
        DB_SSLMODE="require",
        DB_POOL_MIN_SIZE="4",
        REDIS_URL="redis://cache.internal:6379/0",
    )
    assert s["engine"] == "school_site.postgres"  # Django's, keeping the RLS setting current
    assert s["options"]["sslmode"] == "require"
    # pool 20 + overflow 30 of the old SQLAlchemy set-up = at most 50, 30 s wait
    assert s["options"]["pool"] == {"min_size": 4, "max_size": 50, "timeout": 30.0}
    assert s["health"] is True
    assert s["cache"] == "django_redis.cache.RedisCache"
    assert s["ignore_exceptions"] is True
    assert s["broker"] == "redis://cache.internal:6379/0"
    assert s["toolbar"] is False
    assert s["soft_limit"] > 0
    assert s["routes"]["backups.tasks.*"]["queue"] == "maintenance"


def _without_key(tmp_path) -> dict[str, str]:
    return subprocess_env(
        DEBUG="false",
        SECRET_KEY=None,
        SCHOOLHOUSE_TESTING=None,
        SCHOOLHOUSE_ENV_FILE="/nonexistent",
        DATABASE_URL=None,
        REDIS_URL=None,
        CELERY_BROKER_URL=None,
        CELERY_RESULT_BACKEND=None,
        SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
    )


@pytest.mark.parametrize(
    "server",
    [
        [PYTHON, "-c", "import school_site.wsgi"],
        [PYTHON, "-c", "import school_site.asgi"],
        [str(REPO / ".venv" / "bin" / "celery"), "-A", "school_site", "worker", "--pool", "solo"],
        [str(REPO / ".venv" / "bin" / "celery"), "-A", "school_site", "beat"],
    ],
    ids=["wsgi", "asgi", "worker", "beat"],
)
def test_production_servers_without_secret_key_refuse_to_start(tmp_path, server) -> None:
    env = _without_key(tmp_path)
    if "beat" in server:  # beat reads its schedule from the database before it starts
        migrate = [PYTHON, "manage.py", "migrate", "-v", "0"]  # needs no key either
        subprocess.run(migrate, cwd=REPO, check=True, timeout=120, env=env)
    out = subprocess.run(server, cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0
    assert "SECRET_KEY is not set" in out.stdout + out.stderr


def test_commands_that_sign_nothing_run_without_a_key(tmp_path) -> None:
    """A fresh checkout, no .env: checking for missing migrations needs no secret."""
    out = subprocess.run(
        [PYTHON, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=_without_key(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert "No changes detected" in out.stdout


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("DATABASE_URL", "mysql://u:p@h/db", "supports PostgreSQL and SQLite"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be"),
        ("DB_POOL_MAX_SIZE", "lots", "invalid literal"),
    ],
)
def test_invalid_configuration_is_refused_at_start(tmp_path, name, value, message) -> None:
    out = subprocess.run(
        [PYTHON, "-c", PRINT_SETTINGS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(
            DEBUG="true",
            **{
                name: value,
                "SCHOOLHOUSE_ENV_FILE": "/nonexistent",
                "DATABASE_URL": value if name == "DATABASE_URL" else "postgres://u:p@h:5432/d",
            },
        ),
    )
    assert out.returncode != 0
    assert message in out.stderr


def test_check_deploy_is_clean_with_production_values(tmp_path) -> None:
    env = subprocess_env(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        SCHOOLHOUSE_TESTING=None,
        ALLOWED_HOSTS="school.example.org",
        SCHOOLHOUSE_ENV_FILE="/nonexistent",
        SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
    )
    out = subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout


def test_logs_are_one_json_object_a_line(tmp_path) -> None:
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('schoolhouse.test').warning('backup finished', extra={'run': 7})"
    )
    out = subprocess.run(
        [PYTHON, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            SCHOOLHOUSE_TESTING=None,
            LOG_FORMAT="json",
            LOG_LEVEL="INFO",
            SCHOOLHOUSE_ENV_FILE="/nonexistent",
            SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
        ),
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["message"] == "backup finished"
    assert record["level"] == "WARNING" and record["logger"] == "schoolhouse.test"
    assert record["run"] == 7 and "time" in record
