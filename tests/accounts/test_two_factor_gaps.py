"""An administrator who has typed the password but not the code yet gets nothing but the log-in,
log-out and two-factor pages and the probes: every URL of the URLconf is tried, and the health
dashboard refuses such a session even without accounts' middleware."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.accounts.conftest import password_login, redirect_path, totp_code
from tests.monitoring.conftest import BOTH_DATABASES, PUBLIC_ADDRESS
from tests.students.factories import district_admin
from tests.students.test_tenancy import reversible_urls

pytestmark = [
    pytest.mark.unit,
    pytest.mark.real_two_factor,
    pytest.mark.django_db(databases=BOTH_DATABASES),
]

# What a session waiting for its code may still reach.
OPEN_BEFORE_THE_CODE = {
    "login",
    "logout",
    "accounts:two_factor_setup",
    "accounts:two_factor_verify",
    "monitoring:liveness",  # probes: answer by address or token, never by session
    "monitoring:readiness",
    "monitoring:metrics",
}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def waiting_for_code(user) -> tuple[Client, TOTPDevice]:
    """A client logged in with the password only, by a user with a confirmed authenticator."""
    device = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    client = Client()
    assert password_login(client, user.username, ip=PUBLIC_ADDRESS).status_code == 302
    return client, device


def test_no_page_answers_before_the_code(world) -> None:
    client, _device = waiting_for_code(world.admin)
    urls = reversible_urls(world, skip=OPEN_BEFORE_THE_CODE)
    assert len(urls) > 40
    code_page = reverse("accounts:two_factor_verify")
    for name, url in urls:
        response = client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS)
        if url.startswith("/api/"):
            assert response.status_code == 403, (name, url, response.status_code)
        else:
            assert response.status_code == 302, (name, url, response.status_code)
            assert redirect_path(response) == code_page, (name, url, response["Location"])


@pytest.mark.parametrize("query", ["", "?format=json"])
def test_the_health_dashboard_waits_for_the_code(query) -> None:
    admin = district_admin("district-2fa")
    client, device = waiting_for_code(admin)
    url = reverse("monitoring:health") + query
    response = client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS)
    assert response.status_code == 302
    assert redirect_path(response) == reverse("accounts:two_factor_verify")
    # The probes still answer: they never depended on a session.
    assert client.get(reverse("monitoring:liveness")).status_code == 200

    verified = client.post(
        reverse("accounts:two_factor_verify"), {"token": totp_code(device), "next": url}
    )
    assert verified.status_code == 302 and verified["Location"] == url
    assert client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS).status_code in (200, 503)


def test_the_monitoring_pages_refuse_it_even_without_the_middleware(settings) -> None:
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "accounts.middleware.TwoFactorRequiredMiddleware"
    ]
    admin = district_admin("district-2fa-no-mw")
    client, _device = waiting_for_code(admin)
    for url in (reverse("monitoring:health"), reverse("monitoring:performance")):
        response = client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS)
        assert response.status_code == 302, (url, response.status_code)
        assert redirect_path(response) == reverse("accounts:two_factor_verify"), url
