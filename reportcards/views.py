"""Report card batches: start one for a class or its grade level, watch it, get the cards."""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from students.models import Term
from students.tenancy import SchoolAccess
from students.views import school_view

from .models import ReportCardBatch, ReportCardDocument
from .services import batch_create, batch_students


class BatchForm(forms.Form):
    term = forms.ModelChoiceField(queryset=Term.objects.none())
    scope = forms.ChoiceField(
        choices=[("section", "This class"), ("grade", "The whole grade level")],
        widget=forms.RadioSelect,
        initial="section",
    )


@require_http_methods(["GET", "POST"])
@school_view("students.view_grade")
def section_report_cards(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    # Reading needs view_grade; starting a batch writes rows and PDFs, which auditors (who
    # only read) must not do: it takes the permission to record grades.
    if request.method == "POST" and not access.has_perm("students.change_grade"):
        raise PermissionDenied("Your role does not allow this.")
    section = get_object_or_404(
        access.sections().select_related("grade_level", "academic_year"), pk=pk
    )
    form = BatchForm(request.POST or None)
    form.fields["term"].queryset = Term.objects.filter(  # type: ignore[attr-defined]
        academic_year_id=section.academic_year_id
    )
    if request.method == "POST" and form.is_valid():
        whole_grade = form.cleaned_data["scope"] == "grade" and not access.is_teacher
        batch = batch_create(
            school=access.school,
            term=form.cleaned_data["term"],
            section=None if whole_grade else section,
            grade_level=section.grade_level if whole_grade else None,
            actor=request.user,
        )
        return redirect("reportcards:batch_detail", pk=batch.pk)
    batches = ReportCardBatch.objects.for_school(access.school).filter(section=section)[:10]
    return render(
        request, "reportcards/section.html", {"section": section, "form": form, "batches": batches}
    )


def _batch(access: SchoolAccess, pk: int) -> ReportCardBatch:
    batches = ReportCardBatch.objects.for_school(access.school).select_related(
        "term", "section", "grade_level"
    )
    if access.is_teacher:
        batches = batches.filter(section__in=access.sections())
    return get_object_or_404(batches, pk=pk)


@school_view("students.view_grade")
def batch_detail(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    batch = _batch(access, pk)
    # The batch's own children (its class or grade level), of those this user may see: the
    # term's cards of the rest of the school are not this batch's.
    cards = (
        ReportCardDocument.objects.filter(
            term=batch.term,
            student__in=access.students().filter(pk__in=batch_students(batch).values("pk")),
        )
        .select_related("student", "document")
        .order_by("student__last_name")
        if batch.status != ReportCardBatch.Status.QUEUED
        else []
    )
    return render(request, "reportcards/batch.html", {"batch": batch, "cards": cards})


@school_view("students.view_grade")
def batch_progress(request: HttpRequest, access: SchoolAccess, pk: int) -> JsonResponse:
    batch = _batch(access, pk)
    return JsonResponse(
        {
            "status": batch.status,
            "total": batch.total,
            "done": batch.done,
            "failed": batch.failed,
            "percent": batch.percent,
        }
    )
