"""Tenancy: attach the user's current school and role to each request as `request.access`,
and let PostgreSQL's row-level security see only that school for the request's queries."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from students.row_security import acting_for_nothing
from students.tenancy import SESSION_KEY, SchoolAccess, activate, resolve_access


class CurrentSchoolMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Lazy: static files, the login page and health probes never pay for the lookup.
        request.access = SimpleLazyObject(lambda: _access(request))  # type: ignore[attr-defined]
        # A request acts for no school until its access is known, and for none after it.
        with acting_for_nothing():
            return self.get_response(request)


def _access(request: HttpRequest) -> SchoolAccess | None:
    return activate(resolve_access(request.user, request.session.get(SESSION_KEY)))
