"""API tokens: stored hashed, shown once, scoped, revocable, expiring, rate-limited."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from django.urls import reverse
from django.utils import timezone

from api.models import ApiToken
from api.services import api_token_create, api_token_revoke
from audit.models import AuditEvent

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_only_a_hash_of_the_token_is_stored(world) -> None:
    token, raw = api_token_create(
        user=world.registrar, school=world.school, name="SIS sync", actor=world.admin
    )
    assert raw.startswith("shk_") and len(raw) >= 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {getattr(stored, f.attname) for f in ApiToken._meta.fields}
    assert stored.prefix == raw[:12]
    event = AuditEvent.objects.get(action="api_token_create")
    assert event.actor == world.admin and raw not in str(event.changes)


def test_a_token_is_issued_only_to_staff_of_the_school(world, other_world) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        api_token_create(user=world.teacher, school=other_world.school, name="x", actor=None)


@pytest.mark.parametrize("keyword", ["Bearer", "Token", "bearer"])
def test_bearer_and_token_keywords_authenticate(world, make_token, keyword) -> None:
    from rest_framework.test import APIClient

    raw = make_token(world.registrar, world.school)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {raw}")
    assert client.get(reverse("api:student-list")).status_code == 200


def test_missing_or_wrong_token_is_401(world, make_token, api) -> None:
    make_token(world.registrar, world.school)
    anonymous = api().get(reverse("api:student-list"))
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert api("shk_not-a-real-token").get(reverse("api:student-list")).status_code == 401
    assert api("garbage").get(reverse("api:student-list")).status_code == 401


def test_read_only_token_may_read_but_not_write(world, make_token, api, today) -> None:
    client = api(make_token(world.admin, world.school, scope=ApiToken.Scope.READ))
    assert client.get(reverse("api:student-list")).status_code == 200
    response = client.post(
        reverse("api:attendance-bulk"),
        {
            "section": world.section.pk,
            "date": str(today),
            "marks": [{"student": world.students[0].pk, "status": "absent"}],
        },
        format="json",
    )
    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]


def test_the_role_still_decides_what_a_read_write_token_may_do(world, make_token, api, today):
    client = api(make_token(world.auditor, world.school))
    assert client.get(reverse("api:attendance-list")).status_code == 200
    response = client.post(
        reverse("api:attendance-bulk"),
        {"section": world.section.pk, "date": str(today), "marks": []},
        format="json",
    )
    assert response.status_code == 403


def test_revoked_token_stops_working_at_once(world, make_token, api) -> None:
    raw = make_token(world.registrar, world.school)
    client = api(raw)
    assert client.get(reverse("api:student-list")).status_code == 200
    token = ApiToken.objects.get(prefix=raw[:12])
    api_token_revoke(token=token, actor=world.admin)
    assert client.get(reverse("api:student-list")).status_code == 401
    assert AuditEvent.objects.filter(action="api_token_revoke", actor=world.admin).exists()


def test_expired_token_is_refused(world, make_token, api) -> None:
    raw = make_token(
        world.registrar, world.school, expires_at=timezone.now() + datetime.timedelta(hours=1)
    )
    client = api(raw)
    assert client.get(reverse("api:student-list")).status_code == 200
    ApiToken.objects.filter(prefix=raw[:12]).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert client.get(reverse("api:student-list")).status_code == 401


def test_last_used_is_stamped(world, make_token, api) -> None:
    raw = make_token(world.registrar, world.school)
    assert ApiToken.objects.get(prefix=raw[:12]).last_used_at is None
    api(raw).get(reverse("api:section-list"))
    assert ApiToken.objects.get(prefix=raw[:12]).last_used_at is not None


def test_a_user_who_left_the_school_is_refused(world, make_token, api) -> None:
    from students.models import StaffMember

    raw = make_token(world.registrar, world.school)
    StaffMember.objects.filter(user=world.registrar).update(is_active=False)
    response = api(raw).get(reverse("api:student-list"))
    assert response.status_code == 403


def test_each_token_has_its_own_rate_limit(world, make_token, api, settings) -> None:
    settings.API_THROTTLE_RATE = "3/minute"
    first = api(make_token(world.registrar, world.school))
    second = api(make_token(world.registrar, world.school))
    url = reverse("api:section-list")
    assert [first.get(url).status_code for _ in range(3)] == [200, 200, 200]
    limited = first.get(url)
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert second.get(url).status_code == 200  # another token's budget is untouched


def test_session_login_works_for_the_browsable_api(client, world) -> None:
    client.force_login(world.registrar)
    page = client.get(reverse("api:student-list"), HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert world.students[0].last_name in page.content.decode()


# --- the admin console ------------------------------------------------------------------------
def test_admin_creates_a_token_and_sees_it_once(client, world) -> None:
    client.force_login(world.admin)
    response = client.post(
        reverse("admin:api_apitoken_add"),
        {
            "user": world.registrar.pk,
            "school": world.school.pk,
            "name": "Timetable",
            "scope": "read",
        },
    )
    assert response.status_code == 200, response.content
    raw = response.context["raw"]
    assert raw in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(name="Timetable")
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert token.created_by == world.admin
    # The change page never shows it again.
    change = client.get(reverse("admin:api_apitoken_change", args=[token.pk]))
    assert raw not in change.content.decode() and token.prefix in change.content.decode()


def test_school_admin_cannot_issue_tokens_for_other_schools(client, world, other_world) -> None:
    client.force_login(world.admin)
    response = client.post(
        reverse("admin:api_apitoken_add"),
        {"user": other_world.registrar.pk, "school": world.school.pk, "name": "x", "scope": "read"},
    )
    assert response.status_code == 200 and "raw" not in response.context
    assert not ApiToken.objects.exists()
    theirs, _ = api_token_create(
        user=other_world.registrar, school=other_world.school, name="theirs", actor=None
    )
    listing = client.get(reverse("admin:api_apitoken_changelist"))
    assert theirs not in listing.context["cl"].result_list


def test_admin_revokes_after_confirming(client, world, make_token, api) -> None:
    raw = make_token(world.registrar, world.school)
    token = ApiToken.objects.get(prefix=raw[:12])
    client.force_login(world.admin)
    url = reverse("admin:api_apitoken_changelist")
    form = {"action": "revoke_tokens", "_selected_action": [token.pk]}
    confirm = client.post(url, form)
    assert confirm.status_code == 200
    assert "cannot be undone" in confirm.content.decode()
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None  # nothing happened yet
    done = client.post(url, {**form, "confirmed": "yes"})
    assert done.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert api(raw).get(reverse("api:student-list")).status_code == 401


def test_command_issues_a_token_that_works(world, api, capsys) -> None:
    from django.core.management import call_command

    call_command(
        "api_token_create",
        "--user",
        world.registrar.username,
        "--school",
        world.school.code,
        "--name",
        "Provisioned",
        "--scope",
        "read",
        "--expires-in-days",
        "30",
    )
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(name="Provisioned")
    assert token.scope == "read" and token.expires_at is not None
    assert api(raw).get(reverse("api:student-list")).status_code == 200
