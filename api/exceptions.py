"""The API's exception handler: the answers of `api.views.exception_handler`, and every
refusal written to the audit trail as the staff pages' are (audit.refusals).

A 403 (the role or the token may not do this) and a 404 for a record named in the URL (which
is how another school's record, or a student outside a teacher's classes, answers) are
refusals; a 401 is not written (nobody is known to be asking)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from audit.refusals import NOT_ALLOWED, NOT_FOUND, access_refused_record
from students.row_security import is_policy_refusal

from .views import exception_handler as answer


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_policy_refusal(exc):  # PostgreSQL's wall refused another school's row
        exc = exceptions.PermissionDenied("Not allowed.")
    response = answer(exc, context)
    if response is not None:
        _record_refusal(exc, context)
    return response


def _record_refusal(exc: Exception, context: dict[str, Any]) -> None:
    if isinstance(exc, DjangoPermissionDenied | exceptions.PermissionDenied):
        reason = NOT_ALLOWED
    elif isinstance(exc, Http404 | exceptions.NotFound) and context.get("kwargs"):
        reason = NOT_FOUND
    else:
        return
    request = context.get("request")
    if request is None:
        return
    access = getattr(request, "access", None)
    access_refused_record(
        request=request,
        reason=reason,
        school_id=access.school.pk if access else None,
        kwargs=context.get("kwargs") or {},
        detail=str(getattr(exc, "detail", exc)),
        user=request.user,
    )
