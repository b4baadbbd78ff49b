"""Whole-command runs in child processes, as an operator would type them: the embedded mode
(SQLite online backup through the same pipeline) and the restore that swaps the live
PostgreSQL database only once the restored copy is complete."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid

import pytest
import redis

from backups.pipeline import pg_connect
from tests.backups.conftest import live_params, pg_url
from tests.helpers import REPO, subprocess_env

pytestmark = [pytest.mark.integration]


# The demo district administrator has no authenticator: these restores break the glass, as
# after losing a server before anyone enrolled a phone (audited and alerted in the child).
AS_OPERATOR = ("--operator", "admin", "--break-glass", "drill: restore from a child process")


def manage(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if check and result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_embedded_mode_backs_up_verifies_and_restores_sqlite(tmp_path) -> None:
    db = tmp_path / "db.sqlite3"
    env = subprocess_env(
        DATABASE_URL=f"sqlite:///{db}",
        SCHOOLHOUSE_TESTING="true",
        SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
        BACKUP_KEYSET_PATH=str(tmp_path / "keyset.json"),
        BACKUP_LOCAL_DIR=str(tmp_path / "backups"),
        REDIS_URL="",
        CELERY_BROKER_URL="filesystem://",
        CELERY_RESULT_BACKEND=f"file://{tmp_path / 'results'}",
    )
    manage("migrate", "-v", "0", env=env)
    manage("seed_demo", "--schools", "1", "--students", "30", "--attendance-days", "3", env=env)
    manage("demo_accounts", env=env)  # the district admin who runs the restore
    manage("backup_keys", "create", env=env)
    out = manage("backup_now", env=env).stdout
    assert "succeeded" in out
    assert "verified" in manage("verify_backup", env=env).stdout
    refused = manage("restore_backup", "latest", *AS_OPERATOR, env=env, check=False)
    assert refused.returncode != 0 and "not empty" in refused.stderr
    copy = tmp_path / "restored.sqlite3"
    manage(
        "restore_backup",
        "latest",
        *AS_OPERATOR,
        "--target-database",
        f"sqlite:///{copy}",
        env=env,
    )
    count = "SELECT count(*) FROM students_student"
    with sqlite3.connect(db) as a, sqlite3.connect(copy) as b:
        assert a.execute(count).fetchone() == b.execute(count).fetchone() == (30,)


@pytest.mark.django_db
def test_restore_of_the_live_database_switches_only_when_complete(tmp_path, throwaway_redis):
    params = live_params()
    name = f"backups_live_{uuid.uuid4().hex[:8]}"
    from psycopg import sql

    with pg_connect({**params, "dbname": "postgres"}) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg_url({**params, "dbname": name})
    env = subprocess_env(
        DATABASE_URL=url,
        DB_POOL="false",
        SCHOOLHOUSE_TESTING="true",
        BACKUP_KEYSET_PATH=str(tmp_path / "keyset.json"),
        BACKUP_LOCAL_DIR=str(tmp_path / "backups"),
        REDIS_URL=throwaway_redis,  # a cache of its own, to see the restore empty it
    )
    cache = redis.Redis.from_url(throwaway_redis)
    try:
        manage("migrate", "-v", "0", env=env)
        manage("seed_demo", "--schools", "1", "--students", "20", "--attendance-days", "3", env=env)
        manage("demo_accounts", env=env)  # the district admin who runs the restore
        manage("backup_keys", "create", env=env)
        manage("backup_now", env=env)
        with pg_connect({**params, "dbname": name}) as conn:
            conn.execute("DELETE FROM students_attendancerecord")  # the accident
        refused = manage("restore_backup", "latest", *AS_OPERATOR, env=env, check=False)
        assert refused.returncode != 0 and "--force" in refused.stderr
        cache.set("cached-before-the-restore", b"stale")
        out = manage("restore_backup", "latest", *AS_OPERATOR, "--force", env=env).stdout
        assert "_before_restore_" in out
        # Whatever was cached described the database that was replaced.
        assert cache.get("cached-before-the-restore") is None
        with pg_connect({**params, "dbname": name}) as conn:
            assert conn.execute("SELECT count(*) FROM students_attendancerecord").fetchone()[0] > 0
            # The run history survived the switch, including the backup just restored.
            assert conn.execute("SELECT count(*) FROM backups_backuprun").fetchone()[0] == 1
    finally:
        with pg_connect({**params, "dbname": "postgres"}) as conn:
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{name}%"]
            ).fetchall():
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(row[0])
                    )
                )
