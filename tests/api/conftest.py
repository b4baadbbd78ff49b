"""API fixtures: tokens issued through the real service, and a DRF client that sends them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from api.models import ApiToken
from api.services import api_token_create


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """The test world's five accounts cost seconds with the production PBKDF2 cost; these
    tests are about the API, not passwords (Django's advice for test suites)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_token(db: None) -> Callable[..., str]:
    """Issue a token (through the service) and return the secret a client would send."""

    def make(user, school, *, scope: str = ApiToken.Scope.READ_WRITE, **kwargs) -> str:
        _token, raw = api_token_create(
            user=user, school=school, name="Test integration", scope=scope, actor=None, **kwargs
        )
        return raw

    return make


@pytest.fixture
def api() -> Callable[[str | None], APIClient]:
    """A client sending `Authorization: Bearer <token>` (no session)."""

    def client(raw: str | None = None) -> APIClient:
        c = APIClient()
        if raw:
            c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return c

    return client


@pytest.fixture
def admin_api(world, make_token, api) -> APIClient:
    """The school administrator of `world`, through a read-write token."""
    return api(make_token(world.admin, world.school))
