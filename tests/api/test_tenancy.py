"""Every API route, taken from the router, with a token of every role of one school: the
other school's objects are invisible (403/404 on their ids, absent from every list)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.api.objects import RESOURCE_OBJECTS, router_patterns

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

ROLES = ["admin", "registrar", "teacher", "auditor"]


def test_every_router_resource_has_a_test_object() -> None:
    basenames = {basename for basename, _name, _pattern in router_patterns()}
    assert basenames == set(RESOURCE_OBJECTS)


@pytest.mark.parametrize("role", ROLES)
def test_other_schools_ids_answer_404_or_403_on_every_route(
    world, other_world, make_token, api, role
) -> None:
    client = api(make_token(getattr(world, role), world.school))
    routes = [(b, n) for b, n, p in router_patterns() if "pk" in p.pattern.regex.groupindex]
    assert len(routes) >= 11
    for basename, name in routes:
        url = reverse(name, kwargs={"pk": RESOURCE_OBJECTS[basename](other_world).pk})
        for method in ("get", "post", "put", "patch", "delete"):
            response = getattr(client, method)(url, {}, format="json")
            assert response.status_code in (403, 404, 405), (
                f"{role} {method.upper()} {url} ({name}) answered {response.status_code}"
            )


@pytest.mark.parametrize("role", ROLES)
def test_lists_never_show_the_other_schools_rows(world, other_world, make_token, api, role):
    client = api(make_token(getattr(world, role), world.school))
    lists = [(b, n) for b, n, p in router_patterns() if n.endswith("-list")]
    assert len(lists) == len(RESOURCE_OBJECTS)
    for basename, name in lists:
        theirs = RESOURCE_OBJECTS[basename](other_world).pk
        ours = RESOURCE_OBJECTS[basename](world).pk
        response = client.get(reverse(name), {"page_size": 200})
        if response.status_code == 403:  # the role may not list these at all
            continue
        assert response.status_code == 200, (name, response.status_code, response.content)
        shown = {row["id"] for row in response.json()["results"]}
        assert theirs not in shown, f"{role} sees the other school's {basename} in {name}"
        if role in ("admin", "registrar", "auditor"):
            assert ours in shown, f"{role} misses their own school's {basename} in {name}"


def test_own_schools_objects_are_readable_on_every_route(world, admin_api) -> None:
    for basename, name, pattern in router_patterns():
        if "pk" not in pattern.pattern.regex.groupindex:
            continue
        url = reverse(name, kwargs={"pk": RESOURCE_OBJECTS[basename](world).pk})
        response = admin_api.get(url)
        assert response.status_code == 200, (name, response.status_code, response.content)


def test_teacher_sees_only_their_sections_students(world, make_token, api) -> None:
    client = api(make_token(world.teacher, world.school))
    shown = {row["id"] for row in client.get(reverse("api:student-list")).json()["results"]}
    assert shown == {s.pk for s in world.students}
    assert client.get(reverse("api:student-detail", args=[world.outsider.pk])).status_code == 404
    sections = {row["id"] for row in client.get(reverse("api:section-list")).json()["results"]}
    assert sections == {world.section.pk}
    # A filter naming another section's student finds nothing rather than saying it exists.
    found = client.get(reverse("api:guardian-list"), {"student": world.outsider.pk}).json()
    assert found["results"] == []


def test_a_token_works_only_in_its_own_school(world, other_world, district_user, make_token, api):
    # A district administrator may work in any school, but a token is bound to one.
    client = api(make_token(district_user, world.school))
    shown = {row["id"] for row in client.get(reverse("api:student-list")).json()["results"]}
    assert world.students[0].pk in shown
    assert other_world.students[0].pk not in shown
    other = reverse("api:student-detail", args=[other_world.students[0].pk])
    assert client.get(other).status_code == 404


def test_writes_cannot_reference_the_other_schools_rows(world, other_world, admin_api, today):
    response = admin_api.post(
        reverse("api:enrollment-list"),
        {"student": world.students[0].pk, "section": other_world.section.pk},
        format="json",
    )
    assert response.status_code == 400
    assert "section" in response.json()
    response = admin_api.post(
        reverse("api:attendance-bulk"),
        {
            "section": world.section.pk,
            "date": str(today),
            "marks": [{"student": other_world.students[0].pk, "status": "present"}],
        },
        format="json",
    )
    assert response.status_code == 400
    response = admin_api.post(
        reverse("api:student-list"),
        {
            "student_number": "NEW-1",
            "first_name": "Ada",
            "last_name": "Byron",
            "date_of_birth": "2014-01-02",
            "grade_level": other_world.level.pk,
        },
        format="json",
    )
    assert response.status_code == 400 and "grade_level" in response.json()
