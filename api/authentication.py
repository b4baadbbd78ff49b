"""`Authorization: Bearer <token>` (or `Token <token>`) for integrations.

The tenancy middleware runs before DRF authenticates, so for a session it has already
attached `request.access`; for a token it only saw an anonymous visitor. Here the access is
resolved for the token's user in the token's school and put on the Django request, so views,
permissions and services read `request.access` the same way for both.
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from students.tenancy import SchoolAccess, activate, resolve_access

from .models import ApiToken
from .services import api_token_authenticate

KEYWORDS = (b"bearer", b"token")


def token_access(token: ApiToken) -> SchoolAccess | None:
    """The user's access in the token's school, or None when they no longer work there."""
    access = resolve_access(token.user, token.school_id)
    if access is None or access.school.pk != token.school_id:
        return None
    return access


class ApiTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None  # no token: the session may still authenticate
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the header as 'Bearer <token>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The token is not valid.") from None
        token = api_token_authenticate(raw=raw)
        if token is None:
            raise exceptions.AuthenticationFailed("The token is not valid, expired or revoked.")
        access = activate(token_access(token), one_school=True)  # a token has one school
        request._request.access = access  # type: ignore[attr-defined]
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
