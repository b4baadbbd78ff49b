"""The second wall: PostgreSQL's row-level security holds on its own.

These tests go around the application on purpose: raw SQL through the application's role,
the ORM with no school filter, a Celery task that forgets to filter. Each must see one
school's rows, or none. (With the application's own filters switched off, the URL x role
matrix and the API's tenancy tests run again: tests/security/test_second_wall.py.)
"""

from __future__ import annotations

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
from tests.helpers import running_worker

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
