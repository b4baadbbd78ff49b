"""One object of each API resource in a test school, and the API's URLs that take an id,
read from the router itself: a new endpoint is covered by the tenancy tests (here and in
tests/students/test_tenancy.py) as soon as it is registered, or fails them until its
resource is added to RESOURCE_OBJECTS."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal

from django.urls import URLPattern


def _grade(w) -> object:
    from students.models import Grade

    return Grade.objects.get_or_create(
        assessment=w.assessment,
        student=w.students[0],
        defaults={"school": w.school, "score": Decimal("12"), "max_score": w.assessment.max_score},
    )[0]


def _attendance(w) -> object:
    from students.models import AttendanceRecord

    return AttendanceRecord.objects.get_or_create(
        student=w.students[0],
        date=datetime.date(2026, 9, 1),
        period=0,
        defaults={"school": w.school, "section": w.section, "status": "absent"},
    )[0]


def _document(w) -> object:
    from tests.files.factories import document_for_world

    return document_for_world(w)


# How to find one object of each router resource (basename) in a SchoolWorld.
RESOURCE_OBJECTS: dict[str, Callable[[object], object]] = {
    "student": lambda w: w.students[0],
    "guardian": lambda w: w.students[0].guardian_links.first().guardian,
    "section": lambda w: w.section,
    "enrollment": lambda w: w.students[0].enrollments.first(),
    "attendance": _attendance,
    "assessment": lambda w: w.assessment,
    "grade": _grade,
    "document": _document,
    "document-version": lambda w: _document(w).current_version,
}


def router_patterns() -> list[tuple[str, str, URLPattern]]:
    """(basename, url name, pattern) of every route the API's router generates."""
    from api.urls import router

    names = {basename for _prefix, _viewset, basename in router.registry}
    found = []
    for pattern in router.urls:
        if not isinstance(pattern, URLPattern) or not pattern.name or pattern.name == "api-root":
            continue
        basename = max((b for b in names if pattern.name.startswith(f"{b}-")), key=len)
        found.append((basename, f"api:{pattern.name}", pattern))
    return found


def api_object_kwargs() -> dict[str, Callable[[object], dict[str, object]]]:
    """OBJECT_KWARGS entries for the API's URLs that take an id, for the URLconf walker."""
    entries: dict[str, Callable[[object], dict[str, object]]] = {}
    for basename, name, pattern in router_patterns():
        if "pk" not in pattern.pattern.regex.groupindex:
            continue
        getter = RESOURCE_OBJECTS[basename]
        entries[name] = lambda w, getter=getter: {"pk": getter(w).pk}
    return entries
