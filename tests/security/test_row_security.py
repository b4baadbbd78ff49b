"""The second wall: PostgreSQL's row-level security holds on its own.

These tests go around the application on purpose: raw SQL through the application's role,
the ORM with no school filter, a Celery task that forgets to filter. Each must see one
school's rows, or none. (With the application's own filters switched off, the URL x role
matrix and the API's tenancy tests run again: tests/security/test_second_wall.py.)
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.utils import ProgrammingError

from students.models import Student
from students.row_security import (
    EVERY_SCHOOL,
    POLICY,
    acting_for,
    school_columns,
    school_owned_models,
)
from tests.helpers import REPO, running_worker, subprocess_env

pytestmark = [pytest.mark.skipif(not settings.USING_POSTGRES, reason="PostgreSQL only")]


def _app_role_is_separate() -> bool:
    return connection.settings_dict["USER"] != settings.DATABASE_MAINTENANCE["USER"]


@pytest.mark.unit
@pytest.mark.django_db
def test_every_table_with_a_school_column_has_the_policy() -> None:
    """From the catalogue, not from the models: a table some migration adds with a school
    column and no policy fails here."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relrowsecurity,
                   EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = %s)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            WHERE c.relkind = 'r' AND EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND NOT a.attisdropped
                  AND a.attname IN ('school_id', 'to_school_id')
            )
            ORDER BY 1
            """,
            [POLICY],
        )
        tables = cursor.fetchall()
    assert len(tables) >= 25
    unguarded = [name for name, enabled, has_policy in tables if not (enabled and has_policy)]
    assert not unguarded, f"school columns without row-level security: {unguarded}"
    assert {m._meta.db_table for m in school_owned_models()} == {t[0] for t in tables}


@pytest.mark.unit
@pytest.mark.django_db
def test_the_application_role_is_bound_by_the_policies() -> None:
    if not _app_role_is_separate():
        pytest.skip("one-role run (DATABASE_URL is the maintenance role)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)
        cursor.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            " AND tableowner = current_user"
        )
        assert cursor.fetchone() == (0,)
        # It owns nothing, so it can neither drop a policy nor turn security off.
        with pytest.raises(ProgrammingError), transaction.atomic():
            cursor.execute("ALTER TABLE students_student DISABLE ROW LEVEL SECURITY")


@pytest.mark.unit
@pytest.mark.django_db
def test_the_orm_without_a_school_filter_sees_the_school_it_acts_for(world, other_world) -> None:
    with acting_for([world.school.pk]):
        assert {s.school_id for s in Student.objects.all()} == {world.school.pk}
        assert Student.objects.filter(pk=other_world.students[0].pk).count() == 0
    with acting_for([]):
        for model in school_owned_models():
            # Rows of no school (the district's own audit entries) are no school's rows.
            owned = Q()
            for column in school_columns(model):
                owned |= Q(**{f"{column}__isnull": False})
            assert not model._default_manager.filter(owned).exists(), model._meta.label
    with acting_for(EVERY_SCHOOL):
        assert {s.school_id for s in Student.objects.all()} == {
            world.school.pk,
            other_world.school.pk,
        }


@pytest.mark.unit
@pytest.mark.django_db
def test_a_row_of_another_school_cannot_be_written(world, other_world) -> None:
    student = other_world.students[0]
    with acting_for([world.school.pk]):
        # An update or delete of a row it cannot see touches nothing...
        assert Student.objects.filter(pk=student.pk).update(first_name="Mallory") == 0
        assert Student.objects.filter(pk=student.pk).delete()[0] == 0
        # ...and a new row of another school is refused by the database itself.
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Student.objects.create(
                school=other_world.school, student_number="X-1", first_name="A", last_name="B"
            )
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Student.objects.filter(pk=world.students[0].pk).update(school=other_world.school)
    student.refresh_from_db()
    assert student.first_name != "Mallory"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_raw_sql_through_the_application_role_without_the_setting_sees_no_school_rows(
    world,
) -> None:
    if not _app_role_is_separate():
        pytest.skip("one-role run (DATABASE_URL is the maintenance role)")
    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"], dbname=s["NAME"]
    ) as raw:
        for model in school_owned_models():
            table = model._meta.db_table
            # Rows of no school (the district's own audit entries) are no school's rows.
            owned = " OR ".join(f"{c} IS NOT NULL" for c in school_columns(model))
            count = raw.execute(f'SELECT count(*) FROM "{table}" WHERE {owned}').fetchone()  # noqa: S608
            assert count == (0,), f"{table}: {count} rows without a school"
        acting = f"{{{world.school.pk}}}"
        raw.execute("SELECT set_config('schoolhouse.schools', %s, false)", [acting])
        assert raw.execute("SELECT count(*) FROM students_student").fetchone() == (
            len(world.students) + 1,
        )
        # A value that is not a list of ids is an error, never every row.
        raw.execute("SELECT set_config('schoolhouse.schools', 'all', false)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            raw.execute("SELECT count(*) FROM students_student")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_task_for_one_school_cannot_read_another_even_if_it_forgets_to_filter(
    world, other_world, live_celery, tmp_path
) -> None:
    from tests.security.row_security_tasks import schools_seen

    queue = "row-security-test"
    with running_worker(queue, tmp_path / "worker.log", "-I", "tests.security.row_security_tasks"):
        with acting_for([world.school.pk]):
            assert schools_seen.apply_async(queue=queue).get(timeout=60) == [world.school.pk]
        with acting_for([other_world.school.pk]):
            assert schools_seen.apply_async(queue=queue).get(timeout=60) == [other_world.school.pk]
        with acting_for([]):  # queued by nobody's request: beat's jobs start with no school
            assert schools_seen.apply_async(queue=queue).get(timeout=60) == []


def test_school_owned_models_cover_every_app() -> None:
    labels = {m._meta.label_lower for m in school_owned_models()}
    assert {"students.student", "files.document", "api.apitoken", "audit.auditevent"} <= labels
    assert "students.school" not in labels
    assert all(apps.get_model(label) for label in labels)


@pytest.mark.unit
@pytest.mark.django_db
def test_the_health_check_finds_nothing_wrong_with_the_test_database() -> None:
    from students.row_security import row_security_problems

    errors, warnings = row_security_problems()
    assert errors == []
    if _app_role_is_separate():
        assert warnings == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_one_role_install_of_the_previous_release_moves_to_two_roles(tmp_path) -> None:
    """README's path, on a database as the previous release left it: one role owning and
    using every table, no policies. The operator creates the application's role, points
    DATABASE_URL at it and DATABASE_MAINTENANCE_URL at the old one, and runs `migrate`."""
    if not _app_role_is_separate():
        pytest.skip("one-role run (DATABASE_URL is the maintenance role)")
    owner = settings.DATABASE_MAINTENANCE
    app = connection.settings_dict
    name = f"sh_roles_{uuid.uuid4().hex[:8]}"

    def url(role: dict) -> str:
        return f"postgres://{role['USER']}:{role['PASSWORD']}@{role['HOST']}:{role['PORT']}/{name}"

    def manage(*args: str, **env: str) -> str:
        done = subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=subprocess_env(DB_POOL="false", SCHOOLHOUSE_TESTING="true", **env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def as_owner() -> psycopg.Connection:
        return psycopg.connect(
            host=owner["HOST"], port=owner["PORT"], user=owner["USER"],
            password=owner["PASSWORD"], dbname=name, autocommit=True,
        )  # fmt: skip

    admin = psycopg.connect(
        host=owner["HOST"], port=owner["PORT"], user=owner["USER"],
        password=owner["PASSWORD"], dbname="postgres", autocommit=True,
    )  # fmt: skip
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        one_role = {"DATABASE_URL": url(owner), "DATABASE_MAINTENANCE_URL": ""}
        manage("migrate", "--noinput", **one_role)
        with as_owner() as db:  # as the previous release left it: no policies
            db.execute("DROP FUNCTION schoolhouse_acting_schools() CASCADE")
            db.execute("DROP FUNCTION schoolhouse_acting_for_every_school() CASCADE")
            for table in [m._meta.db_table for m in school_owned_models()]:
                db.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
        manage(
            "seed_demo", "--schools", "2", "--students", "6", "--attendance-days", "2", **one_role
        )
        with as_owner() as db:
            before = db.execute("SELECT school_id, count(*) FROM students_student GROUP BY 1")
            counts = dict(before.fetchall())
        assert len(counts) == 2

        two_roles = {"DATABASE_URL": url(app), "DATABASE_MAINTENANCE_URL": url(owner)}
        manage("migrate", "--noinput", **two_roles)

        with psycopg.connect(
            host=app["HOST"], port=app["PORT"], user=app["USER"], password=app["PASSWORD"],
            dbname=name, autocommit=True,
        ) as db:  # fmt: skip
            assert db.execute("SELECT count(*) FROM students_student").fetchone() == (0,)
            for school, count in counts.items():
                db.execute("SELECT set_config('schoolhouse.schools', %s, false)", [f"{{{school}}}"])
                seen = db.execute("SELECT school_id, count(*) FROM students_student GROUP BY 1")
                assert dict(seen.fetchall()) == {school: count}
        with as_owner() as db:  # nothing was lost on the way
            after = db.execute("SELECT school_id, count(*) FROM students_student GROUP BY 1")
            assert dict(after.fetchall()) == counts
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.unit
@pytest.mark.django_db
def test_a_row_the_policy_refuses_answers_403_and_is_audited_never_a_500(
    world, other_world, rf
) -> None:
    from types import SimpleNamespace

    from audit.models import AuditEvent
    from school_site.middleware import CurrentSchoolMiddleware

    with acting_for([world.school.pk]):
        with pytest.raises(ProgrammingError) as refused, transaction.atomic():
            Student.objects.create(
                school=other_world.school, student_number="X-2", first_name="A", last_name="B"
            )
        request = rf.post("/students/")
        request.user = world.registrar
        request.access = SimpleNamespace(school=world.school)
        response = CurrentSchoolMiddleware(lambda r: None).process_exception(request, refused.value)
    assert response is not None and response.status_code == 403
    assert b"row-level" not in response.content and b"INSERT" not in response.content
    entry = AuditEvent.objects.get(action="access_refused")
    assert entry.actor == world.registrar and entry.school_id == world.school.pk
    assert entry.changes["detail"] == "refused by row-level security"
    # Anything else is not the middleware's to answer.
    assert CurrentSchoolMiddleware(lambda r: None).process_exception(request, ValueError()) is None
