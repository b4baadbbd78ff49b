"""Refused requests on the trail: someone asking for a record they may not have.

The doors that refuse (the staff pages' `school_view`, the API's exception handler, the
download endpoint) call `access_refused_record`, so an administrator can see a user probing
another school's or another class's records: who, what, when and from where (the address
comes from the request's origin, audit.context).

A record of another school and an id that exists nowhere answer the same 404, so both are
written: telling them apart here would need the other school's rows. Refusals of anonymous
visitors are not written (they are sent to the log-in page first; the API answers 401).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .models import AuditEvent
from .services import audit_record

ACCESS_REFUSED = "access_refused"
NOT_FOUND = "not found"
NOT_ALLOWED = "not allowed"

# The URL segment before an object's id, as the trail names the kind of record asked for.
_KINDS = {
    "students": "student",
    "classes": "class",
    "sections": "class",
    "assessments": "assessment",
    "documents": "document",
    "versions": "document version",
    "document-versions": "document version",
    "report-cards": "report card batch",
    "guardians": "guardian",
    "enrollments": "enrollment",
    "attendance": "attendance record",
    "grades": "grade",
}


def asked_for(request: HttpRequest, kwargs: dict[str, Any]) -> tuple[str, str]:
    """The kind and id of the record the URL names (`("student", "42")`), or two empty
    strings for a URL that names none. The kind is the path segment before the id."""
    pk = kwargs.get("pk")
    if pk is None:
        return "", ""
    segments = [s for s in request.path.split("/") if s]
    wanted = str(pk)
    for before, segment in zip(segments, segments[1:], strict=False):
        if segment == wanted:
            return _KINDS.get(before, before), wanted
    return "", wanted


def access_refused_record(
    *,
    request: HttpRequest,
    reason: str,
    school_id: int | None,
    kwargs: dict[str, Any] | None = None,
    detail: str = "",
    user: Any = None,
) -> AuditEvent | None:
    """Write one "access_refused" entry for the request's user (or `user`: the API's,
    authenticated by token), in the school they were working in; nothing for an anonymous
    visitor. `kwargs`: the URL's arguments (the record asked for)."""
    user = user if user is not None else getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    kwargs = kwargs or {}
    kind, object_id = asked_for(request, kwargs)
    match = getattr(request, "resolver_match", None)
    changes: dict[str, Any] = {
        "reason": reason,
        "method": request.method or "",
        "path": request.get_full_path()[:500],
    }
    if kind:
        changes["record"] = kind
    if object_id:
        changes["id"] = object_id
    others = {k: str(v) for k, v in kwargs.items() if k != "pk"}
    if others:
        changes["arguments"] = others
    if match is not None and match.view_name:
        changes["page"] = match.view_name
    if detail:
        changes["detail"] = detail[:200]
    return audit_record(
        actor=getattr(user, "_wrapped", user),
        action=ACCESS_REFUSED,
        school_id=school_id,
        changes=changes,
    )
