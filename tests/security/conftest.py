"""Fixtures of the security tests: one world of two schools, built once per module.

The permission matrix sends a few thousand requests; building the schools, their staff and
their documents for each of them would cost more than the requests. The world is written
once inside an outer transaction that is rolled back when the module ends, and every test
runs in a savepoint of it (pytest-django's `db`), so tests still see a fresh world each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import connection, transaction

from tests.conftest import SchoolWorld, build_school

# Tables that change on reads or on every request by design (sessions, the audit trail of
# disclosures, request metrics, lockout and two-factor bookkeeping): never "school data".
BOOKKEEPING_TABLE_PREFIXES = (
    "django_session",
    "audit_",
    "auditlog_",
    "monitoring_",
    "axes_",
    "otp_",
    "django_otp",
    "accounts_",
    "api_",  # API request logs / token last-used stamps
)


@dataclass
class MatrixWorld:
    north: SchoolWorld  # the users' own school
    south: SchoolWorld  # another school nobody of North may see
    untaught: SchoolWorld  # North seen through objects outside the teacher's sections
    district: object
    nobody: object  # logged in, no staff membership anywhere
    # North's class 7A through other teaching assignments: a co-teacher, and substitutes
    # whose dates are over, current and still to come ("co_teacher", "substitute_before"...)
    assignments: dict[str, object] = dataclasses.field(default_factory=dict)


def _documents_and_rows(world: SchoolWorld) -> None:
    """Rows for the admin's models that the base world has none of."""
    from tests.files.factories import document_for_world
    from tests.students.factories import AttendanceRecordFactory, GradeFactory
    from tests.students.test_tenancy import make_history_rows

    document_for_world(world)
    _api_token(world)
    AttendanceRecordFactory(school=world.school, section=world.section, student=world.students[0])
    GradeFactory(school=world.school, assessment=world.assessment, student=world.students[0])
    make_history_rows(world)


def _api_token(world: SchoolWorld) -> None:
    from api.services import api_token_create

    api_token_create(user=world.registrar, school=world.school, name="matrix", actor=world.admin)


def _assignments(world: SchoolWorld) -> dict[str, object]:
    """Teachers of the world's class by other assignments than the lead's."""
    import datetime

    from django.utils import timezone

    from students.models import SectionTeacher
    from tests.students.factories import SectionTeacherFactory

    today = timezone.localdate()
    week = datetime.timedelta(days=7)
    dates = {
        "co_teacher": (SectionTeacher.Role.CO_TEACHER, None, None),
        "substitute_before": (SectionTeacher.Role.SUBSTITUTE, today + week, today + 2 * week),
        "substitute_during": (SectionTeacher.Role.SUBSTITUTE, today - week, today + week),
        "substitute_after": (SectionTeacher.Role.SUBSTITUTE, today - 2 * week, today - week),
    }
    return {
        name: SectionTeacherFactory(
            school=world.school,
            section=world.section,
            role=role,
            starts_on=starts,
            ends_on=ends,
            staff__user__username=f"{name}-matrix",
        ).staff.user
        for name, (role, starts, ends) in dates.items()
    }


def _untaught_view(world: SchoolWorld) -> SchoolWorld:
    """The same school, but its objects are those of the class the teacher does not teach."""
    from tests.files.factories import make_document
    from tests.students.factories import AssessmentFactory, StudentGuardianFactory

    assessment = AssessmentFactory(
        school=world.school,
        section=world.other_section,
        subject=world.subject,
        term=world.term,
        name="Untaught quiz",
    )
    make_document(world, student=world.outsider, title="Outsider document")
    StudentGuardianFactory(school=world.school, student=world.outsider)
    return dataclasses.replace(
        world, students=[world.outsider], section=world.other_section, assessment=assessment
    )


@pytest.fixture(scope="module")
def matrix_world(django_db_setup: None, django_db_blocker: object) -> Iterator[MatrixWorld]:
    from tests.students.factories import UserFactory, district_admin

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            north = build_school("North")
            south = build_school("South")
            for w in (north, south):
                _documents_and_rows(w)
            yield MatrixWorld(
                north=north,
                south=south,
                untaught=_untaught_view(north),
                district=district_admin("district-matrix"),
                nobody=UserFactory(username="nobody-matrix"),
                assignments=_assignments(north),
            )
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def table_writes() -> dict[str, int]:
    """Rows inserted, updated or deleted so far in this transaction, per table (PostgreSQL's
    own counters, so no write can slip past however it is made: ORM, raw SQL or trigger)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del + n_tup_hot_upd"
            " FROM pg_stat_xact_user_tables"
        )
        return {
            name: count
            for name, count in cursor.fetchall()
            if count and not name.startswith(BOOKKEEPING_TABLE_PREFIXES)
        }


def written_tables(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {name for name, count in after.items() if count != before.get(name, 0)}
