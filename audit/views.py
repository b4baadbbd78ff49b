"""The auditor's pages: the school's trail, a child's disclosures, and the exports."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from students.models import StaffMember, Student
from students.tenancy import SchoolAccess
from students.views import school_view

from . import selectors
from .forms import TrailFilterForm
from .services import audit_record
from .subject_access import subject_access_zip

VIEW_TRAIL = "audit.view_auditevent"


def _filters(request: HttpRequest, access: SchoolAccess) -> tuple[TrailFilterForm, Any]:
    form = TrailFilterForm(request.GET or None)
    filters = selectors.TrailFilters()
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        student_id: int | None = None
        if data["student"]:
            # A number from another school matches nobody here, never that school's child.
            student_id = (
                Student.objects.for_school(access.school)
                .filter(student_number=data["student"])
                .values_list("pk", flat=True)
                .first()
            ) or 0
        filters = selectors.TrailFilters(
            actor=data["actor"],
            action=data["action"],
            student_id=student_id,
            date_from=data["date_from"],
            date_to=data["date_to"],
        )
    return form, filters


def _page(request: HttpRequest, queryset: Any) -> Any:
    return Paginator(queryset, settings.AUDIT_EVENTS_PER_PAGE).get_page(request.GET.get("page"))


@school_view(VIEW_TRAIL)
def trail(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    form, filters = _filters(request, access)
    events = selectors.audit_event_list(school_id=access.school.pk, filters=filters)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit/trail.html",
        {
            "form": form,
            "page": _page(request, events),
            "query": query.urlencode(),
            "actions": selectors.COMMON_ACTIONS,
            "refused": selectors.ACCESS_REFUSED,
        },
    )


class _Echo:
    """A file-like csv.writer target that hands each line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


@school_view(VIEW_TRAIL)
def trail_export(request: HttpRequest, access: SchoolAccess) -> StreamingHttpResponse:
    """The filtered trail as CSV, streamed row by row from a server-side cursor."""
    form, filters = _filters(request, access)
    events = selectors.audit_event_list(school_id=access.school.pk, filters=filters)
    with transaction.atomic():
        audit_record(
            actor=request.user,
            action="export",
            target=access.school,
            changes={
                "what": "audit.csv",
                "filters": {k: str(v) for k, v in vars(filters).items() if v not in ("", None)},
            },
        )
    writer = csv.writer(_Echo())
    header = ["time", "who", "action", "record type", "record id", "record", "student id"]
    header += ["ip address", "details"]

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for e in events.values_list(
            "created_at",
            "actor_repr",
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "student_id",
            "ip_address",
            "changes",
        ).iterator(chunk_size=2000):
            yield writer.writerow(
                [e[0].isoformat(), *("" if v is None else v for v in e[1:8]), e[8] or ""]
            )

    stamp = timezone.localdate().isoformat()
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="audit-{access.school.code}-{stamp}.csv"'
    )
    return response


def _student(access: SchoolAccess, pk: int) -> Student:
    try:
        return Student.objects.for_school(access.school).get(pk=pk)
    except Student.DoesNotExist:
        raise Http404("No such student.") from None


@school_view(VIEW_TRAIL)
def student_disclosures(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    """Who has seen this child's record? Every read, download and export, and every change."""
    student = _student(access, pk)
    show = "changes" if request.GET.get("show") == "changes" else "disclosures"
    if show == "changes":
        rows: Any = selectors.student_change_list(school_id=access.school.pk, student_id=pk)
    else:
        rows = selectors.student_disclosure_list(school_id=access.school.pk, student_id=pk)
    return render(
        request,
        "audit/student_disclosures.html",
        {
            "student": student,
            "show": show,
            "page": _page(request, rows),
            "query": f"show={show}",
            "can_export": may_export_subject_access(access),
        },
    )


def may_export_subject_access(access: SchoolAccess) -> bool:
    return access.is_district_admin or access.role == StaffMember.Role.SCHOOL_ADMIN


@school_view()
def subject_access_export(
    request: HttpRequest, access: SchoolAccess, pk: int
) -> StreamingHttpResponse:
    """All the school holds about one student, as a zip (a parent's subject-access request)."""
    if not may_export_subject_access(access):
        raise PermissionDenied("Only the school's administrators may export a whole record.")
    student = _student(access, pk)
    response = StreamingHttpResponse(
        subject_access_zip(student=student, actor=request.user),  # type: ignore[arg-type]
        content_type="application/zip",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="subject-access-{student.student_number}.zip"'
    )
    return response
