"""A page cursor comes back from the client: a forged one is a 400 with a JSON error on every
list endpoint (taken from the router), never a 500, and a real one still pages."""

from __future__ import annotations

from base64 import b64encode

import pytest
from django.urls import reverse

from tests.api.objects import RESOURCE_OBJECTS, router_patterns

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _cursor(querystring: str) -> str:
    return b64encode(querystring.encode()).decode()


def list_endpoints() -> list[str]:
    return [name for _basename, name, _pattern in router_patterns() if name.endswith("-list")]


FORGED = {
    "a quote in an id position": _cursor("p=abc'--"),
    "a position past bigint": _cursor("p=99999999999999999999999"),
    "a negative offset": _cursor("o=-1"),
    "a direction that is not 0 or 1": _cursor("r=x&p=1"),
    "not base64": "!!!not-a-cursor!!!",
    "base64 of bytes that are not text": b64encode(b"\xff\xfe\xfd").decode(),
}


def test_there_are_list_endpoints_to_try() -> None:
    assert len(list_endpoints()) >= 9


@pytest.mark.parametrize("forged", FORGED.values(), ids=FORGED.keys())
def test_a_forged_cursor_is_a_400_on_every_list_endpoint(world, admin_api, forged) -> None:
    for basename in RESOURCE_OBJECTS:  # at least one row each, so the filter is really run
        RESOURCE_OBJECTS[basename](world)
    for name in list_endpoints():
        response = admin_api.get(reverse(name), {"cursor": forged})
        assert response.status_code == 400, (name, response.status_code, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        assert "cursor" in response.json()["detail"].lower()


def test_a_position_that_is_no_date_is_a_400_when_ordered_by_a_date(world, admin_api) -> None:
    url = reverse("api:student-list")
    response = admin_api.get(url, {"ordering": "-date_of_birth", "cursor": _cursor("p=abc'--")})
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"].lower()


def test_real_cursors_still_page_forwards_and_back(world, admin_api) -> None:
    url = reverse("api:student-list")
    first = admin_api.get(url, {"page_size": 2}).json()
    second = admin_api.get(first["next"]).json()
    assert second["results"] and second["previous"]
    back = admin_api.get(second["previous"]).json()
    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]
    by_birth = admin_api.get(url, {"page_size": 2, "ordering": "-date_of_birth"}).json()
    assert admin_api.get(by_birth["next"]).status_code == 200
