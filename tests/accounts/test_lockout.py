"""Brute-force protection through the real log-in form: N wrong passwords lock the
username on that address, the right one is then refused too, and an administrator (or the
operator's command) unlocks it."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.accounts.conftest import password_login

pytestmark = [pytest.mark.unit]


def lock_out(client: Client, username: str, ip: str = "127.0.0.1") -> None:
    limit = settings.AXES_FAILURE_LIMIT
    for attempt in range(1, limit + 1):
        response = password_login(client, username, "wrong-password-123", ip=ip)
        if attempt < limit:
            assert response.status_code == 200 and b"didn't match" in response.content
    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content


def test_wrong_passwords_lock_out_until_an_administrator_unlocks(world, superuser) -> None:
    user = world.registrar
    client = Client()
    lock_out(client, user.username)
    refused = password_login(client, user.username)  # the right password
    assert refused.status_code == 429 and b"administrator" in refused.content
    assert "_auth_user_id" not in client.session
    # Same username from another address: not locked (an attacker can't lock staff out).
    assert password_login(Client(), user.username, ip="10.9.8.7").status_code == 302

    admin = Client()
    admin.force_login(superuser)
    changelist = reverse("admin:axes_accessattempt_changelist")
    page = admin.get(changelist)
    assert page.status_code == 200 and user.username.encode() in page.content
    attempt = AccessAttempt.objects.get(username=user.username, ip_address="127.0.0.1")
    # The right password typed while locked out counted as one more failure.
    assert attempt.failures_since_start == settings.AXES_FAILURE_LIMIT + 1
    done = admin.post(changelist, {"action": "unlock", "_selected_action": [attempt.pk]})
    assert done.status_code == 302
    assert not AccessAttempt.objects.filter(username=user.username).exists()

    assert password_login(client, user.username)["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_delete_with_confirmation_also_unlocks(world, superuser) -> None:
    lock_out(Client(), world.teacher.username)
    attempt = AccessAttempt.objects.get(username=world.teacher.username)
    admin = Client()
    admin.force_login(superuser)
    changelist = reverse("admin:axes_accessattempt_changelist")
    confirm = admin.post(
        changelist, {"action": "delete_selected", "_selected_action": [attempt.pk]}
    )
    assert b"Are you sure" in confirm.content  # Django's confirmation page
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()
    admin.post(
        changelist,
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert password_login(Client(), world.teacher.username).status_code == 302


def test_axes_reset_command_unlocks(world) -> None:
    lock_out(Client(), world.auditor.username)
    assert password_login(Client(), world.auditor.username).status_code == 429
    call_command("axes_reset")
    assert password_login(Client(), world.auditor.username).status_code == 302


def test_case_of_the_username_buys_no_extra_guesses(world) -> None:
    name = world.registrar.username
    client = Client()
    for variant in [name, name.upper(), name.title(), name, name.upper()]:
        response = password_login(client, variant, "wrong-password-123")
    assert response.status_code == 429


def test_a_good_password_clears_earlier_typos(world) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        password_login(client, world.registrar.username, "typo-password-123")
    assert password_login(client, world.registrar.username).status_code == 302
    client.post(reverse("logout"))
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert password_login(client, world.registrar.username, "typo-123456789").status_code == 200
    assert password_login(client, world.registrar.username).status_code == 302
