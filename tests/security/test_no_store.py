"""No signed-in page stays in the browser: every URL of the URLconf, read by a signed-in
administrator (a session) and every API route (a token), answers with `Cache-Control:
no-store`, so a shared school computer's back button shows the next person nothing."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tests.api.objects import router_patterns
from tests.monitoring.conftest import BOTH_DATABASES
from tests.students.test_tenancy import OBJECT_KWARGS, reversible_urls

pytestmark = [pytest.mark.unit, pytest.mark.django_db(databases=BOTH_DATABASES)]


def _no_store(response) -> bool:
    directives = {d.strip().lower() for d in response.get("Cache-Control", "").split(",")}
    return "no-store" in directives


def test_every_page_and_export_for_a_signed_in_user_is_no_store(world) -> None:
    client = Client()
    client.force_login(world.admin)
    urls = reversible_urls(world, skip={"logout"})
    # The pupils' pages and exports of the issue are among them.
    names = {name for name, _url in urls}
    for expected in (
        "students:student_detail",
        "students:student_export",
        "students:roster_export",
        "students:report_card",
        "students:transcript",
        "students:guardian_contacts",
        "files:version_download",
        "api:student-list",
    ):
        assert expected in names
    missing = []
    for name, url in urls:
        response = client.get(url)
        if not _no_store(response):
            missing.append(f"{name} {url} {response.status_code} {response.get('Cache-Control')}")
    assert not missing, "no Cache-Control: no-store on:\n" + "\n".join(missing)


def test_every_api_route_read_with_a_token_is_no_store(world) -> None:
    from api.services import api_token_create

    _token, raw = api_token_create(
        user=world.admin, school=world.school, name="no-store", actor=None
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for _basename, name, pattern in router_patterns():
        kwargs = OBJECT_KWARGS[name](world) if pattern.pattern.regex.groups else {}
        response = api.get(reverse(name, kwargs=kwargs))
        assert response.status_code < 500, (name, response.status_code)
        assert _no_store(response), (name, response.get("Cache-Control"))


def test_a_view_that_chose_its_cache_control_keeps_it_and_visitors_get_private(client) -> None:
    assert client.get(reverse("monitoring:liveness"))["Cache-Control"] != "private"
    redirected = client.get(reverse("students:student_list"))
    assert redirected.status_code == 302
    assert redirected["Cache-Control"] == "private"
