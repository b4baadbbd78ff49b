"""Where the current request came from, so services can audit without being handed a request."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse

from school_site.proxies import client_address


@dataclass(frozen=True)
class RequestOrigin:
    ip_address: str | None
    user_agent: str
    # request.user, still lazy: model history resolves it only when a row changes.
    user: Any = None

    def acting_user(self) -> User | None:
        """The logged-in user behind the request, if any (the actor of model history)."""
        user = self.user
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        # SimpleLazyObject: unwrap so a foreign key gets the real instance.
        user = getattr(user, "_wrapped", user)
        return user if isinstance(user, User) else None


_origin: contextvars.ContextVar[RequestOrigin | None] = contextvars.ContextVar(
    "audit_request_origin", default=None
)


def current_origin() -> RequestOrigin | None:
    return _origin.get()


def client_ip(request: HttpRequest) -> str | None:
    # One answer for the lockout, the trail and the allowlists: forwarded addresses only
    # from TRUSTED_PROXIES, the rightmost hop that is not ours (school_site.proxies).
    return client_address(request)


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _origin.set(
            RequestOrigin(
                ip_address=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
                user=getattr(request, "user", None),
            )
        )
        try:
            return self.get_response(request)
        finally:
            _origin.reset(token)
