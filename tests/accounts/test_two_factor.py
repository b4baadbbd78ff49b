"""Two-factor authentication for administrators, through the real pages: the set-up with a
code computed from the new device's key, the code after every log-in, backup codes, the gate
in front of every page and the admin, and the lost-phone reset."""

from __future__ import annotations

import re
import time

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from tests.accounts.conftest import password_login, redirect_path, totp_code

pytestmark = [pytest.mark.unit, pytest.mark.real_two_factor]

DASHBOARD = "/dashboard/"


def enrol(client: Client, user) -> list[str]:
    """Log in with the password and set up an authenticator, as a new administrator does."""
    assert password_login(client, user.username).status_code == 302
    gate = client.get(DASHBOARD)
    assert redirect_path(gate) == reverse("accounts:two_factor_setup")
    page = client.get(gate["Location"])
    assert page.status_code == 200 and b"<svg" in page.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    secret = re.search(rb'data-testid="totp-secret">([A-Z2-7 ]+)<', page.content).group(1)
    from base64 import b32encode

    assert secret.replace(b" ", b"") == b32encode(device.bin_key)  # what the phone is told
    done = client.post(
        reverse("accounts:two_factor_setup"), {"token": totp_code(device), "next": DASHBOARD}
    )
    assert done.status_code == 200
    return done.context["codes"]


def test_new_administrator_is_made_to_enrol_then_works(world) -> None:
    client = Client()
    assert password_login(client, world.admin.username)["Location"] == DASHBOARD
    # Every page but the two-factor, log-in and log-out pages sends them to the set-up.
    for path in [DASHBOARD, "/students/", reverse("admin:index"), reverse("accounts:account")]:
        response = client.get(path)
        assert redirect_path(response) == reverse("accounts:two_factor_setup"), path
    assert client.get("/health/live/").status_code == 200

    page = client.get(reverse("accounts:two_factor_setup"))
    device = TOTPDevice.objects.get(user=world.admin, confirmed=False)
    assert device.config_url.startswith("otpauth://totp/Schoolhouse")
    wrong = client.post(reverse("accounts:two_factor_setup"), {"token": "000000"})
    assert b"did not match" in wrong.content
    assert client.get(DASHBOARD).status_code == 302
    assert AuditEvent.objects.filter(actor=world.admin, action="2fa_verify_failed").count() == 1

    # A wrong code makes the device wait a second (doubling with each further one).
    time.sleep(1.1)
    client.logout()
    codes = enrol(client, world.admin)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert TOTPDevice.objects.get(user=world.admin).confirmed
    assert client.get(DASHBOARD).status_code == 200
    assert (
        client.session[DEVICE_ID_SESSION_KEY]
        == TOTPDevice.objects.get(user=world.admin).persistent_id
    )
    assert AuditEvent.objects.filter(actor=world.admin, action="2fa_setup").count() == 1
    assert page.status_code == 200


def test_enrolled_administrator_gives_a_code_at_every_log_in(world) -> None:
    client = Client()
    enrol(client, world.admin)
    device = TOTPDevice.objects.get(user=world.admin)
    client.post(reverse("logout"))

    password_login(client, world.admin.username)
    gate = client.get("/students/?q=a")
    assert redirect_path(gate) == reverse("accounts:two_factor_verify")
    assert "next=%2Fstudents%2F%3Fq%3Da" in gate["Location"]
    wrong = client.post(reverse("accounts:two_factor_verify"), {"token": "12345x"})
    assert b"not a code" in wrong.content or b"wrong" in wrong.content
    assert client.get("/students/").status_code == 302
    # The code of the next period (the one just used for set-up is spent).
    ok = client.post(
        reverse("accounts:two_factor_verify"),
        {"token": totp_code(device, steps_ahead=1), "next": "/students/?q=a"},
    )
    assert ok.status_code == 302 and ok["Location"] == "/students/?q=a"
    assert client.get("/students/").status_code == 200
    # A code is accepted once: replaying it in another session fails.
    other = Client()
    password_login(other, world.admin.username)
    replay = other.post(
        reverse("accounts:two_factor_verify"), {"token": totp_code(device, steps_ahead=1)}
    )
    assert replay.status_code == 200 and other.get(DASHBOARD).status_code == 302
    failures = AuditEvent.objects.filter(actor=world.admin, action="2fa_verify_failed")
    assert failures.count() == 2


def test_a_backup_code_works_once(world) -> None:
    client = Client()
    codes = enrol(client, world.admin)
    client.post(reverse("logout"))
    password_login(client, world.admin.username)
    used = client.post(reverse("accounts:two_factor_verify"), {"token": codes[0]})
    assert used.status_code == 302 and client.get(DASHBOARD).status_code == 200
    assert StaticToken.objects.filter(device__user=world.admin).count() == 9
    assert AuditEvent.objects.filter(action="2fa_backup_code_used").count() == 1
    client.post(reverse("logout"))
    password_login(client, world.admin.username)
    again = client.post(reverse("accounts:two_factor_verify"), {"token": codes[0]})
    assert again.status_code == 200 and client.get(DASHBOARD).status_code == 302


def test_other_roles_are_not_asked_for_a_code(world) -> None:
    for user in [world.registrar, world.teacher, world.auditor]:
        client = Client()
        password_login(client, user.username)
        assert client.get(DASHBOARD).status_code == 200, user.username
        assert not TOTPDevice.objects.filter(user=user).exists()


def test_district_admins_and_superusers_must_use_two_factor(world, district_user, superuser):
    for user in [district_user, superuser]:
        client = Client()
        password_login(client, user.username)
        assert redirect_path(client.get(DASHBOARD)) == reverse("accounts:two_factor_setup")


def test_admin_site_refuses_an_unverified_administrator_even_without_the_middleware(
    world, superuser, settings
) -> None:
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "accounts.middleware.TwoFactorRequiredMiddleware"
    ]
    client = Client()
    password_login(client, superuser.username)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    TOTPDevice.objects.create(user=superuser, name="phone", confirmed=True)
    client.post(
        reverse("accounts:two_factor_verify"),
        {"token": totp_code(TOTPDevice.objects.get(user=superuser))},
    )
    assert client.get(reverse("admin:index")).status_code == 200


def test_test_clients_force_login_is_verified_like_a_real_code(world) -> None:
    """The conftest shortcut used by the rest of the suite gives the same session marks as
    a real code: django-otp's device id, checked against a confirmed device."""
    from tests.conftest import _otp_verify_client

    client = Client()
    client.force_login(world.admin)
    assert redirect_path(client.get(DASHBOARD)) == reverse("accounts:two_factor_setup")
    _otp_verify_client(client, world.admin)
    assert client.get(DASHBOARD).status_code == 200
    device = TOTPDevice.objects.get(user=world.admin, confirmed=True)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    # A deleted device un-verifies the session at once (django-otp reloads it each request).
    device.delete()
    assert redirect_path(client.get(DASHBOARD)) == reverse("accounts:two_factor_setup")


def test_lost_phone_reset_command(world, capsys) -> None:
    client = Client()
    enrol(client, world.admin)
    call_command("reset_2fa", world.admin.username)
    assert "Removed 2 two-factor device(s)" in capsys.readouterr().out
    assert not TOTPDevice.objects.filter(user=world.admin).exists()
    assert not StaticToken.objects.filter(device__user=world.admin).exists()
    assert AuditEvent.objects.filter(action="2fa_reset", target_id=str(world.admin.pk)).exists()
    # The old session lost its device, so it is back at the set-up page.
    assert redirect_path(client.get(DASHBOARD)) == reverse("accounts:two_factor_setup")


def test_account_page_regenerates_backup_codes(world) -> None:
    client = Client()
    old = enrol(client, world.admin)
    page = client.get(reverse("accounts:account"))
    assert b"10 backup codes left" in page.content
    new = client.post(reverse("accounts:account"), {"action": "backup_codes"}).context["codes"]
    assert set(new).isdisjoint(old)
    assert set(
        StaticToken.objects.filter(device__user=world.admin).values_list("token", flat=True)
    ) == set(new)
