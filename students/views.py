"""Staff pages. Thin: parse the request, call one selector or service, render.

Every object is looked up through `request.access` (students.tenancy), so an id from another
school, or a student outside a teacher's sections, answers 404 as if it did not exist.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from audit.refusals import NOT_ALLOWED, NOT_FOUND, access_refused_record
from audit.services import audit_record, section_disclosure_record

from . import csv_io, moves, reports, row_security, selectors, services
from .forms import (
    AttendanceDateForm,
    AttendanceSheetForm,
    GradeSheetForm,
    StudentFilterForm,
    StudentImportForm,
    StudentMoveForm,
)
from .models import (
    Assessment,
    GradeLevel,
    School,
    Student,
    StudentMove,
    Term,
)
from .tenancy import SESSION_KEY, SchoolAccess

View = Callable[..., HttpResponseBase]


def school_view(perm: str | None = None) -> Callable[[View], View]:
    """Require a logged-in user working in a school, optionally with a permission there.
    The view receives the `SchoolAccess` as its second argument.

    This is the staff pages' one door, so it is also where refusals are written to the audit
    trail (audit.refusals): every "not allowed", and every "not found" for a record named in
    the URL, which is how a record of another school or of another class answers."""

    def decorate(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            access = request.access  # type: ignore[attr-defined]
            try:
                if not access:
                    raise PermissionDenied("Your account is not assigned to any school.")
                if perm and not access.has_perm(perm):
                    raise PermissionDenied("Your role does not allow this.")
                return view(
                    request,
                    access._wrapped if hasattr(access, "_wrapped") else access,
                    *args,
                    **kwargs,
                )
            except PermissionDenied as exc:
                _refusal_record(request, access, kwargs, NOT_ALLOWED, str(exc))
                raise
            except Http404 as exc:
                if kwargs:  # a record was asked for by its id
                    _refusal_record(request, access, kwargs, NOT_FOUND, str(exc))
                raise

        return wrapper

    return decorate


def _refusal_record(
    request: HttpRequest,
    access: SchoolAccess | None,
    kwargs: dict[str, Any],
    reason: str,
    detail: str,
) -> None:
    access_refused_record(
        request=request,
        reason=reason,
        school_id=access.school.pk if access else None,
        kwargs=kwargs,
        detail=detail,
    )


@school_view()
def dashboard(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    """The school's figures, or for a teacher those of the classes they teach today."""
    figures = selectors.dashboard_figures_for(access=access)
    return render(request, "students/dashboard.html", {"figures": figures})


@require_POST
@school_view()
def switch_school(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    try:
        school_id = int(request.POST.get("school", ""))
    except ValueError:
        school_id = 0
    if school_id not in {s.pk for s in access.schools}:
        raise PermissionDenied("You do not work at that school.")
    request.session[SESSION_KEY] = school_id
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = reverse("students:dashboard")
    # Object pages of the old school would 404 in the new one: land on the dashboard.
    return redirect(reverse("students:dashboard") if "/students/" in target else target)


@school_view("students.view_student")
def student_list(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    form = StudentFilterForm(
        request.GET or None,
        grade_levels=GradeLevel.objects.for_school(access.school),
        sections=selectors.section_choices(access=access),
    )
    filters: dict[str, Any] = {"status": Student.Status.ACTIVE}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "search": data["q"],
            "grade_level_id": data["grade_level"].pk if data["grade_level"] else None,
            "section_id": data["section"].pk if data["section"] else None,
            "status": data["status"] or None,
        }
    students = selectors.student_list(access=access, **filters)
    page = selectors.page_with_total(students, settings.STUDENTS_PER_PAGE, request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "students/student_list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
        },
    )


@school_view("students.view_student")
def student_detail(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    try:
        profile = selectors.student_profile_get(access=access, student_id=pk)
    except Student.DoesNotExist:
        raise Http404("No such student.") from None
    # FERPA: a school must be able to say who has seen a child's record.
    audit_record(actor=request.user, action="view", target=profile.student)
    earlier = []
    if profile.transferred_in:
        records = moves.earlier_records(student=profile.student, on=timezone.localdate())
        # Those records are other schools' rows: read them in those schools alone.
        with row_security.acting_for([access.school.pk, *(r.school_id for r in records)]):
            earlier = [selectors.student_record_summary(student=record) for record in records]
    return render(request, "students/student_detail.html", {"profile": profile, "earlier": earlier})


@school_view("students.view_grade")
def report_card(
    request: HttpRequest, access: SchoolAccess, pk: int, term_pk: int
) -> HttpResponseBase:
    if access.is_teacher and pk not in access.taught_student_ids:
        raise Http404("No such student.")
    try:
        student, term, pdf = reports.report_card_cached(
            school=access.school, student_id=pk, term_id=term_pk
        )
    except (Student.DoesNotExist, Term.DoesNotExist) as exc:
        raise Http404("No such report card.") from exc
    audit_record(
        actor=request.user,
        action="report_card_download",
        target=student,
        changes={"term": term.name},
    )
    filename = f"report-card-{student.student_number}-{term.name}.pdf".replace(" ", "-")
    return FileResponse(
        io.BytesIO(pdf), as_attachment=True, filename=filename, content_type="application/pdf"
    )


@school_view("students.view_student")
def student_export(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    students = access.students().order_by("last_name", "first_name", "id")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = (
        f'attachment; filename="students-{access.school.code}-{stamp}.csv"'
    )
    count = csv_io.student_csv_export(students=students, out=response)
    audit_record(
        actor=request.user,
        action="export",
        target=access.school,
        changes={"what": "students.csv", "rows": count},
    )
    return response


def _import_dir() -> Path:
    path = Path(settings.VAR_DIR) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


@require_http_methods(["GET", "POST"])
@school_view("students.add_student")
def student_import(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    """Step 1 uploads and dry-runs the file; step 2 (`apply`) imports it all or nothing."""
    session_key = f"student_import:{access.school.pk}"
    if request.method == "POST" and "apply" in request.POST:
        return _student_import_apply(request, access, session_key)

    form = StudentImportForm(request.POST or None, request.FILES or None)
    plan: csv_io.ImportPlan | None = None
    token: str | None = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            form.add_error(
                "file", f"The file is larger than {settings.IMPORT_MAX_BYTES // 1_048_576} MB."
            )
        else:
            data = upload.read()
            plan = csv_io.student_import_parse(school=access.school, data=data)
            if plan.ok:
                token = uuid.uuid4().hex
                (_import_dir() / f"{token}.csv").write_bytes(data)
                request.session[session_key] = token
    return render(
        request, "students/student_import.html", {"form": form, "plan": plan, "token": token}
    )


def _student_import_apply(
    request: HttpRequest, access: SchoolAccess, session_key: str
) -> HttpResponse:
    """Step 2: re-read the checked file and import it in one transaction, or nothing."""
    token = request.session.get(session_key)
    stored = _import_dir() / f"{token}.csv" if token else None
    if not stored or not stored.exists() or request.POST.get("token") != token:
        messages.error(request, "That import has expired. Upload the file again.")
        return redirect("students:student_import")
    plan = csv_io.student_import_parse(school=access.school, data=stored.read_bytes())
    try:
        result = csv_io.student_import_apply(school=access.school, plan=plan, actor=request.user)
    except (ValueError, ValidationError) as exc:
        messages.error(request, f"Nothing was imported: {exc}")
        return render(
            request,
            "students/student_import.html",
            {
                "form": StudentImportForm(),
                "plan": plan,
                "token": None,
            },
        )
    finally:
        stored.unlink(missing_ok=True)
        request.session.pop(session_key, None)
    messages.success(
        request, f"Imported: {result.created} students created, {result.updated} updated."
    )
    return redirect("students:student_list")


@school_view("students.view_section")
def section_list(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    return render(
        request, "students/section_list.html", {"sections": selectors.section_list(access=access)}
    )


@school_view("students.view_section")
def section_detail(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    section = get_object_or_404(
        access.sections().select_related("grade_level", "academic_year"), pk=pk
    )
    roster = selectors.section_roster(section=section)
    assessments = (
        Assessment.objects.filter(section=section)
        .select_related("subject", "term")
        .order_by("-term__starts_on", "subject__name", "due_on")
    )
    teachers = section.teacher_links.select_related("staff__user").all()
    return render(
        request,
        "students/section_detail.html",
        {
            "section": section,
            "roster": roster,
            "assessments": assessments,
            "teachers": teachers,
        },
    )


@require_http_methods(["GET", "POST"])
@school_view("students.add_attendancerecord")
def attendance_take(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    section = get_object_or_404(access.sections().select_related("academic_year"), pk=pk)
    date_form = AttendanceDateForm(
        request.GET if "date" in request.GET else {"date": timezone.localdate()}
    )
    date = date_form.cleaned_data["date"] if date_form.is_valid() else timezone.localdate()
    rows = selectors.section_attendance_sheet(section=section, date=date)
    form = AttendanceSheetForm(request.POST or None, rows=rows)
    if request.method == "POST" and date_form.is_valid() and form.is_valid():
        marks = {
            pk: services.AttendanceMark(status=s, note=n) for pk, (s, n) in form.marks().items()
        }
        try:
            services.attendance_record_bulk(
                section=section, date=date, marks=marks, actor=request.user
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            absent = sum(1 for s, _n in form.marks().values() if s == "absent")
            messages.success(
                request,
                f"Attendance saved for {section.name} on {date:%A %d %B}: "
                f"{len(marks)} students, {absent} absent.",
            )
            return redirect(f"{reverse('students:attendance_take', args=[section.pk])}?date={date}")
    return render(
        request,
        "students/attendance_take.html",
        {
            "section": section,
            "date_form": date_form,
            "date": date,
            "form": form,
        },
    )


@require_http_methods(["GET", "POST"])
@school_view("students.change_grade")
def grades_enter(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    assessment = get_object_or_404(
        Assessment.objects.filter(section__in=access.sections()).select_related(
            "section", "subject", "term"
        ),
        pk=pk,
    )
    rows = selectors.assessment_grade_sheet(assessment=assessment)
    form = GradeSheetForm(request.POST or None, rows=rows, max_score=assessment.max_score)
    if request.method == "POST" and form.is_valid():
        scores, cleared = form.entries()
        try:
            services.grade_record_bulk(
                assessment=assessment,
                actor=request.user,
                entries={
                    pk: services.GradeEntry(score=s, comment=c) for pk, (s, c) in scores.items()
                },
            )
            if cleared:
                services.grade_delete_bulk(
                    assessment=assessment, student_ids=cleared, actor=request.user
                )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Grades saved for {assessment.name}: {len(scores)} scores.")
            return redirect("students:grades_enter", pk=assessment.pk)
    return render(request, "students/grades_enter.html", {"assessment": assessment, "form": form})


@school_view("students.view_guardian")
def guardian_contacts(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    section = get_object_or_404(
        access.sections().select_related("grade_level", "academic_year"), pk=pk
    )
    sheet = selectors.guardian_contact_sheet(section=section)
    section_disclosure_record(actor=request.user, action="view_contacts", section=section)
    return render(request, "students/guardian_contacts.html", {"section": section, "sheet": sheet})


@school_view("students.view_student")
def roster_export(
    request: HttpRequest, access: SchoolAccess, pk: int, fmt: str
) -> HttpResponseBase:
    if fmt not in {"csv", "pdf"}:
        raise Http404("Rosters are exported as .csv or .pdf.")
    section = get_object_or_404(access.sections().select_related("academic_year"), pk=pk)
    name = f"roster-{access.school.code}-{section.name}".replace(" ", "-")
    what = {"what": f"roster.{fmt}"}
    if fmt == "pdf":
        roster = reports.section_roster_pdf_cached(section=section)
        # The children this PDF prints are the ones it discloses.
        section_disclosure_record(
            actor=request.user,
            action="export",
            section=section,
            changes=what,
            student_ids=roster.student_ids,
        )
        return FileResponse(
            io.BytesIO(roster.pdf),
            as_attachment=True,
            filename=f"{name}.pdf",
            content_type="application/pdf",
        )
    section_disclosure_record(actor=request.user, action="export", section=section, changes=what)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    reports.section_roster_csv(section=section, out=response)
    return response


@school_view("students.view_attendancerecord")
def missing_attendance(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    date_form = AttendanceDateForm(
        request.GET if "date" in request.GET else {"date": timezone.localdate()}
    )
    until = date_form.cleaned_data["date"] if date_form.is_valid() else timezone.localdate()
    days = selectors.recent_school_days(until=until, count=5)
    rows = selectors.sections_missing_attendance(access=access, days=days)
    return render(
        request,
        "students/missing_attendance.html",
        {"rows": rows, "days": days, "date_form": date_form},
    )


@require_http_methods(["GET", "POST"])
@school_view("students.add_studentmove")
def student_move(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    """Withdraw a student, or transfer them to another school of the district."""
    student = get_object_or_404(access.students().filter(status=Student.Status.ACTIVE), pk=pk)
    schools = School.objects.filter(is_active=True).exclude(pk=access.school.pk)
    form = StudentMoveForm(request.POST or None, schools=schools)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["kind"] == StudentMove.Kind.TRANSFER:
                move = moves.student_transfer(
                    student=student,
                    to_school=data["to_school"],
                    effective_on=data["effective_on"],
                    reason_code=data["reason_code"],
                    note=data["note"],
                    new_student_number=data["new_student_number"] or None,
                    actor=request.user,
                )
                when = f"{move.effective_on:%d %B %Y}"
                messages.success(
                    request, f"{student.full_name} transfers to {move.to_school} on {when}."
                )
            else:
                moves.student_withdraw(
                    student=student,
                    effective_on=data["effective_on"],
                    reason_code=data["reason_code"],
                    note=data["note"],
                    actor=request.user,
                )
                messages.success(request, f"{student.full_name} is withdrawn.")
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("students:student_detail", pk=student.pk)
    return render(request, "students/student_move.html", {"student": student, "form": form})


@school_view("students.view_grade")
def transcript(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponseBase:
    """The student's results across all years, as a PDF; each download is audited."""
    student = get_object_or_404(access.students().select_related("school"), pk=pk)
    pdf = reports.transcript_pdf(student=student, cards=reports.transcript_cards(student=student))
    audit_record(actor=request.user, action="transcript_download", target=student)
    return FileResponse(
        io.BytesIO(pdf),
        as_attachment=True,
        filename=f"transcript-{student.student_number}.pdf",
        content_type="application/pdf",
    )
