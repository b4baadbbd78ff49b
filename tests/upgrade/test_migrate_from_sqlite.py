"""SQLite to PostgreSQL: equal data, every rejected row named, nothing half-done."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connections

from school_site.db import maintenance_settings
from tests.helpers import PYTHON, REPO, subprocess_env
from upgrade.sqlite_to_postgres import (
    MigrationFailed,
    MigrationRefused,
    sqlite_migrate_to_postgres,
    table_plans,
)

# No django_db marker: these tests work on databases of their own (a SQLite file and a new
# PostgreSQL database), reached through aliases registered at run time, which Django's test
# case machinery would refuse. The test database is not used.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("_unblocked")]


@pytest.fixture
def _unblocked(django_db_blocker):
    with django_db_blocker.unblock():
        yield


# Rows every kind of value and awkward text: tabs, newlines, backslashes, quotes, accents,
# emoji, JSON, IP addresses, microseconds, NULLs.
FILL = r"""
import django, datetime
django.setup()
from django.core.management import call_command
from django.contrib.sessions.backends.db import SessionStore
from audit.services import audit_record
from monitoring.services import heartbeat_record
from students.demo import demo_data_create
from students.models import Student, Guardian
call_command("setup_periodic_tasks", verbosity=0)
demo_data_create(schools=2, students_per_school=40, seed=5, attendance_days=3,
                 today=datetime.date(2026, 11, 24))
s = Student.objects.order_by("pk").first()
s.notes = "Line one\nLine\ttwo \\ back\\slash \"quoted\" 'single' Zoë 🎒 \r\x0b\x0c\x08 end"
s.medical_notes = "\\N is not null"
s.save()
g = Guardian.objects.order_by("pk").first()
g.alternate_phone = "=1+2"
g.save()
audit_record(actor=None, action="export", target=s,
             changes={"z": [1, 2.5, None], "a": {"nested": "ünïcode", "b": True}})
heartbeat_record(name="celery-beat", hostname="worker@host")
store = SessionStore()
store["k"] = "v"
store.create()
"""


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Path:
    env = subprocess_env(
        DATABASE_URL=None,
        REDIS_URL=None,
        CELERY_BROKER_URL=None,
        CELERY_RESULT_BACKEND=None,
        DEBUG="true",
        SCHOOLHOUSE_TESTING=None,
        SCHOOLHOUSE_ENV_FILE="/nonexistent",
        SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="WARNING",
        DEMO_PASSWORD="upgrade-test-password",
    )
    for args in (["manage.py", "migrate", "--noinput"], ["-c", FILL]):
        out = subprocess.run(
            [PYTHON, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-3000:]
    return tmp_path / "var" / "db.sqlite3"


def _admin_dsn(dbname: str) -> str:
    s = maintenance_settings()
    return (
        f"host={s['HOST']} port={s['PORT']} user={s['USER']} password={s['PASSWORD']} "
        f"dbname={dbname}"
    )


@pytest.fixture
def target() -> Iterator[str]:
    """A new, empty PostgreSQL database registered as the alias `upgrade_target`."""
    name = f"upgrade_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    # As the maintenance role, as `manage.py migrate_from_sqlite` connects: it owns the schema.
    config = {**maintenance_settings(), "NAME": name, "TEST": {}}
    config["OPTIONS"] = {k: v for k, v in config["OPTIONS"].items() if k != "pool"}
    connections.settings["upgrade_target"] = config
    try:
        yield "upgrade_target"
    finally:
        connections["upgrade_target"].close()
        del connections["upgrade_target"]
        del connections.settings["upgrade_target"]
        with psycopg.connect(_admin_dsn("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def source_alias(sqlite_source: Path) -> Iterator[str]:
    connections.settings["upgrade_source"] = {
        **connections.configure_settings(
            {
                "default": {"ENGINE": "django.db.backends.dummy"},
                "upgrade_source": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": str(sqlite_source),
                },
            }
        )["upgrade_source"]
    }
    try:
        yield "upgrade_source"
    finally:
        connections["upgrade_source"].close()
        del connections["upgrade_source"]
        del connections.settings["upgrade_source"]


def table_contents(alias: str, model: type) -> list[tuple]:
    """Every row as Django reads it: both backends' values converted the same way."""
    fields = [f.attname for f in model._meta.local_concrete_fields]
    rows = model._base_manager.using(alias).order_by("pk").values_list(*fields)
    return [tuple(sorted(v.items()) if isinstance(v, dict) else v for v in row) for row in rows]


def target_is_empty(alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        return "students_student" not in connections[alias].introspection.table_names(cursor)


def test_round_trip_gives_equal_data_in_every_table(sqlite_source, source_alias, target, tmp_path):
    report = sqlite_migrate_to_postgres(
        sqlite_path=sqlite_source, database=target, backup_dir=tmp_path / "before"
    )
    assert report.committed and report.verified and not report.rejected
    assert Path(report.backup_path).exists()
    copied = {t.table: t for t in report.tables}
    compared = 0
    for model in apps.get_models(include_auto_created=True):
        if not model._meta.managed or model._meta.proxy:
            continue
        table = model._meta.db_table
        assert table in copied, f"{table} was not copied"
        source_rows = table_contents(source_alias, model)
        assert table_contents(target, model) == source_rows, table
        assert copied[table].source_rows == copied[table].target_rows == len(source_rows)
        compared += bool(source_rows)
    assert compared >= 20  # the fill reached most tables
    # Sequences continue after the copied ids: a new row gets a fresh primary key.
    from students.models import School

    new = School.objects.using(target).create(name="New school", code="new")
    assert new.pk > max(School.objects.using(source_alias).values_list("pk", flat=True))


def test_rejected_rows_are_each_named_and_the_target_is_untouched(sqlite_source, target):
    db = sqlite3.connect(sqlite_source)
    student_id = db.execute("SELECT min(id) FROM students_student").fetchone()[0]
    grade_id = db.execute("SELECT min(id) FROM students_grade").fetchone()[0]
    guardian_id = db.execute("SELECT min(id) FROM students_guardian").fetchone()[0]
    enrollment_id = db.execute("SELECT min(id) FROM students_enrollment").fetchone()[0]
    db.execute("PRAGMA ignore_check_constraints = ON")  # as an older version may have left it
    with db:
        db.execute(
            "UPDATE students_student SET first_name = ? WHERE id = ?", ("x" * 150, student_id)
        )  # longer than varchar(100)
        db.execute("UPDATE students_grade SET score = max_score + 5 WHERE id = ?", (grade_id,))
        db.execute(
            "UPDATE students_guardian SET last_name = CAST(X'4a6fe92d' AS TEXT) WHERE id = ?",
            (guardian_id,),
        )  # bad UTF-8
        db.execute(
            "UPDATE students_enrollment SET section_id = 999999 WHERE id = ?", (enrollment_id,)
        )  # points at nothing
    db.close()
    with pytest.raises(MigrationFailed) as failure:
        sqlite_migrate_to_postgres(
            sqlite_path=sqlite_source, database=target, backup_dir=sqlite_source.parent
        )
    rejected = {(r.table, r.pk) for r in failure.value.report.rejected}
    assert ("students_student", str(student_id)) in rejected
    assert ("students_grade", str(grade_id)) in rejected
    assert ("students_guardian", str(guardian_id)) in rejected
    reasons = " ".join(r.reason for r in failure.value.report.rejected)
    assert "UTF-8" in reasons and "too long" in reasons
    assert target_is_empty(target)  # schema and all: one transaction


def test_dangling_foreign_keys_are_reported(sqlite_source, target):
    db = sqlite3.connect(sqlite_source)
    enrollment_id = db.execute("SELECT min(id) FROM students_enrollment").fetchone()[0]
    with db:
        db.execute(
            "UPDATE students_enrollment SET section_id = 999999 WHERE id = ?", (enrollment_id,)
        )
    db.close()
    with pytest.raises(MigrationFailed) as failure:
        sqlite_migrate_to_postgres(
            sqlite_path=sqlite_source, database=target, backup_dir=sqlite_source.parent
        )
    rows = failure.value.report.rejected
    assert [(r.table, r.pk) for r in rows] == [("students_enrollment", str(enrollment_id))]
    assert "999999" in rows[0].reason
    assert target_is_empty(target)


def test_rerun_without_truncate_refuses_and_dry_run_changes_nothing(
    sqlite_source, target, tmp_path
):
    dry = sqlite_migrate_to_postgres(sqlite_path=sqlite_source, database=target, dry_run=True)
    assert dry.verified and not dry.committed and dry.backup_path is None
    assert target_is_empty(target)
    call_command(
        "migrate_from_sqlite",
        sqlite_path=sqlite_source,
        database=target,
        backup_dir=tmp_path,
        verbosity=0,
    )
    with pytest.raises(CommandError, match="already holds data"):
        call_command(
            "migrate_from_sqlite",
            sqlite_path=sqlite_source,
            database=target,
            backup_dir=tmp_path,
            verbosity=0,
        )
    report = sqlite_migrate_to_postgres(
        sqlite_path=sqlite_source, database=target, truncate=True, backup_dir=tmp_path
    )
    assert report.committed and report.verified


def test_refuses_what_is_not_a_sqlite_database(tmp_path, target):
    bogus = tmp_path / "not.sqlite3"
    bogus.write_text("hello")
    with pytest.raises(MigrationRefused, match="not a SQLite database"):
        sqlite_migrate_to_postgres(sqlite_path=bogus, database=target)
    with pytest.raises(MigrationRefused, match="does not exist"):
        sqlite_migrate_to_postgres(sqlite_path=tmp_path / "missing.sqlite3", database=target)
    with pytest.raises(MigrationRefused, match="not PostgreSQL"):
        connections.settings["not_pg"] = {
            **connections.configure_settings(
                {
                    "default": {"ENGINE": "django.db.backends.dummy"},
                    "not_pg": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(bogus)},
                }
            )["not_pg"]
        }
        try:
            sqlite_migrate_to_postgres(sqlite_path=bogus, database="not_pg")
        finally:
            del connections["not_pg"]
            del connections.settings["not_pg"]


def test_every_installed_table_is_planned() -> None:
    planned = {p.table for p in table_plans()}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.managed and not model._meta.proxy:
            assert model._meta.db_table in planned
