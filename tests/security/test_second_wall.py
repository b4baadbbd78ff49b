"""Either wall alone must hold: with the application's school filters switched off, the URL x
role matrix runs again and must still show no row of another school (the API's tenancy
tests likewise: tests/api/test_second_wall.py). What is left is PostgreSQL's row-level
security (students.row_security).

The switch is this module's fixture alone: `for_school`, the one scoping helper of every
school-owned queryset, becomes a no-op. (A teacher's narrower scope, their own classes, is
the application's rule within a school; the database knows schools, not classes, so the
"untaught" probes still rely on the application.)
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from students.models import SchoolOwnedQuerySet
from tests.security import test_permission_matrix as matrix

pytestmark = [
    pytest.mark.unit,
    pytest.mark.django_db(databases=["default", "monitoring"]),
    pytest.mark.skipif(not settings.USING_POSTGRES, reason="row-level security is PostgreSQL's"),
]


@pytest.fixture(autouse=True)
def _without_the_application_wall(monkeypatch) -> None:
    if connection.settings_dict["USER"] == settings.DATABASE_MAINTENANCE["USER"]:
        pytest.skip("one-role run: the tables' owner is not bound by the policies")
    monkeypatch.setattr(SchoolOwnedQuerySet, "for_school", lambda self, school: self.all())


def test_the_switch_is_off(world, other_world) -> None:
    from students.models import Student

    # Outside a request the tests act for every school: the filter really does nothing.
    assert Student.objects.for_school(world.school).filter(school=other_world.school).exists()


@pytest.mark.parametrize("role", matrix.ROLES + matrix.ASSIGNMENTS)
def test_role_against_every_url_without_the_application_wall(client, matrix_world, role) -> None:
    matrix.test_role_against_every_url(client, matrix_world, role)
