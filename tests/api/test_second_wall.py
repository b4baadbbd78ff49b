"""The API's tenancy tests again with the application's school filters switched off: only
PostgreSQL's row-level security is left to keep the other school out (the URL x role matrix
likewise: tests/security/test_second_wall.py)."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.api import test_tenancy
from tests.security.test_second_wall import _without_the_application_wall  # noqa: F401

pytestmark = [
    pytest.mark.unit,
    pytest.mark.django_db,
    pytest.mark.skipif(not settings.USING_POSTGRES, reason="row-level security is PostgreSQL's"),
]


@pytest.mark.parametrize("role", test_tenancy.ROLES)
def test_api_other_schools_ids_without_the_application_wall(
    world, other_world, make_token, api, role
) -> None:
    test_tenancy.test_other_schools_ids_answer_404_or_403_on_every_route(
        world, other_world, make_token, api, role
    )


@pytest.mark.parametrize("role", test_tenancy.ROLES)
def test_api_lists_without_the_application_wall(world, other_world, make_token, api, role):
    test_tenancy.test_lists_never_show_the_other_schools_rows(
        world, other_world, make_token, api, role
    )


def test_api_token_of_a_district_administrator_without_the_application_wall(
    world, other_world, district_user, make_token, api
) -> None:
    test_tenancy.test_a_token_works_only_in_its_own_school(
        world, other_world, district_user, make_token, api
    )


def test_api_writes_without_the_application_wall(world, other_world, admin_api, today) -> None:
    test_tenancy.test_writes_cannot_reference_the_other_schools_rows(
        world, other_world, admin_api, today
    )
