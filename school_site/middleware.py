"""Tenancy: attach the user's current school and role to each request as `request.access`,
and let PostgreSQL's row-level security see only that school for the request's queries."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from students.row_security import acting_for_nothing, is_policy_refusal
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

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A row another school owns, refused by PostgreSQL itself (the second wall held
        where the first did not): "not allowed", audited as a refusal, never a 500 that
        shows SQL."""
        if not is_policy_refusal(exception):
            return None
        from audit.refusals import NOT_ALLOWED, access_refused_record

        access = getattr(request, "access", None)
        access_refused_record(
            request=request,
            reason=NOT_ALLOWED,
            school_id=access.school.pk if access else None,
            kwargs=getattr(getattr(request, "resolver_match", None), "kwargs", None),
            detail="refused by row-level security",
        )
        return response_for_exception(request, PermissionDenied("Not allowed."))


def _access(request: HttpRequest) -> SchoolAccess | None:
    return activate(resolve_access(request.user, request.session.get(SESSION_KEY)))
