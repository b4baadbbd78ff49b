"""Helpers for the real log-in and two-factor flows: codes computed from a device's key, as
the phone would."""

from __future__ import annotations

import re
import time

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.students.factories import PASSWORD, UserFactory


def totp_code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code the authenticator app shows now (or `steps_ahead` periods later: a device
    accepts each time step once, and tolerates one step of clock drift)."""
    device.refresh_from_db()
    # No drift: the phone shows the code of the real time; the server learns the drift.
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, 0)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def password_login(client: Client, username: str, password: str = PASSWORD, **extra):
    """The real log-in form, posted as a browser would (client address included)."""
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=extra.pop("ip", "127.0.0.1"),
        **extra,
    )


def redirect_path(response) -> str:
    return re.sub(r"\?.*$", "", response["Location"])


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_superuser=True, is_staff=True)
