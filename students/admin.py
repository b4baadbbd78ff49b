"""The management console. Every school-owned model is scoped to the schools the user may
administer: list querysets, foreign-key choices, saved rows and permissions alike."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from audit.services import audit_record

from . import services
from .cache import school_cache_bump
from .forms import RolloverForm
from .models import (
    AbsenceAlert,
    AbsenceAlertSettings,
    AcademicYear,
    Assessment,
    AttendanceRecord,
    Enrollment,
    Grade,
    GradeLevel,
    GradeLevelChange,
    Guardian,
    School,
    Section,
    SectionTeacher,
    StaffMember,
    Student,
    StudentGuardian,
    StudentMove,
    Subject,
    Term,
)
from .rollover import rollover_apply, rollover_plan
from .tenancy import SchoolAccess


def _access(request: HttpRequest) -> SchoolAccess | None:
    access = getattr(request, "access", None)
    return access if access else None


def _school_ids(request: HttpRequest) -> list[int] | None:
    """Schools the admin user may manage; None means every school (district administrator)."""
    access = _access(request)
    if access is None:
        return []
    if access.is_district_admin:
        return None
    return [access.school.pk]


class SchoolScopedMixin:
    """Scoping shared by model admins and inlines."""

    def _scope(self, request: HttpRequest, qs: QuerySet) -> QuerySet:
        ids = _school_ids(request)
        if ids is None:
            return qs
        field = "pk" if qs.model is School else "school_id"
        return qs.filter(**{f"{field}__in": ids})

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self._scope(request, super().get_queryset(request))  # type: ignore[misc]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.related_model
        if related is School or any(f.name == "school" for f in related._meta.fields):
            kwargs["queryset"] = self._scope(request, related._default_manager.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def _perm(self, request: HttpRequest, action: str) -> bool:
        access = _access(request)
        if access is None:
            return False
        opts = self.model._meta  # type: ignore[attr-defined]
        return access.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._perm(request, "view") or self._perm(request, "change")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._perm(request, "add")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._perm(request, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._perm(request, "delete")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


def _bump(obj: Any) -> None:
    # Cached dashboards and report PDFs (students.cache) must not outlive an admin's edit.
    school_id = obj.pk if isinstance(obj, School) else getattr(obj, "school_id", None)
    if school_id:
        school_cache_bump(school_id)


class SchoolScopedAdmin(SchoolScopedMixin, admin.ModelAdmin):
    list_per_page = 50

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        # A row never moves between schools; a school admin only ever creates in their own.
        if "school" in [f.name for f in self.model._meta.fields] and (
            obj is not None or _school_ids(request) is not None
        ):
            fields.append("school")
        return fields

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        ids = _school_ids(request)
        if not change and ids is not None and hasattr(obj, "school_id"):
            obj.school_id = ids[0]
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,
            action="update" if change else "create",
            target=obj,
            changes={name: str(form.cleaned_data.get(name)) for name in form.changed_data},
        )
        _bump(obj)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(actor=request.user, action="delete", target=obj)
        super().delete_model(request, obj)
        _bump(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            audit_record(actor=request.user, action="delete", target=obj)
            _bump(obj)
        super().delete_queryset(request, queryset)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        parent_school = getattr(form.instance, "school_id", None)
        for instance in instances:
            if hasattr(instance, "school_id") and not instance.school_id:
                instance.school_id = parent_school
            instance.save()
            audit_record(
                actor=request.user, action="update" if instance.pk else "create", target=instance
            )
        for obj in formset.deleted_objects:
            audit_record(actor=request.user, action="delete", target=obj)
            obj.delete()
        formset.save_m2m()
        _bump(form.instance)


class SchoolScopedInline(SchoolScopedMixin, admin.TabularInline):
    extra = 0
    exclude = ("school",)


@admin.register(School)
class SchoolAdmin(SchoolScopedAdmin):
    list_display = ("name", "code", "principal_name", "phone", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "code")
    readonly_fields = ("created_at",)


@admin.register(AcademicYear)
class AcademicYearAdmin(SchoolScopedAdmin):
    list_display = ("name", "school", "starts_on", "ends_on", "is_current")
    list_filter = ("school", "is_current")
    search_fields = ("name",)
    actions = ["rollover_action"]

    @admin.action(description="Roll over to the next year…", permissions=["add"])
    def rollover_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one year to roll over.", messages.ERROR)
            return None
        return redirect("admin:students_academicyear_rollover", queryset.get().pk)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/rollover/",
                self.admin_site.admin_view(self.rollover_view),
                name="students_academicyear_rollover",
            ),
            *super().get_urls(),
        ]

    def rollover_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The wizard: fill in the new year, preview every change, then apply it at once."""
        year = self.get_queryset(request).filter(pk=pk).select_related("school").first()
        if year is None or not self.has_add_permission(request):
            raise PermissionDenied
        start, end = year.starts_on, year.ends_on
        initial = {
            "name": f"{start.year + 1}-{end.year + 1}",
            "starts_on": start.replace(year=start.year + 1),
            "ends_on": end.replace(year=end.year + 1),
            "copy_sections": True,
        }
        form = RolloverForm(request.POST or None, initial=initial)
        plan = None
        if request.method == "POST" and form.is_valid():
            try:
                plan = rollover_plan(
                    school=year.school,
                    from_year=year,
                    name=form.cleaned_data["name"],
                    starts_on=form.cleaned_data["starts_on"],
                    ends_on=form.cleaned_data["ends_on"],
                    copy_sections=form.cleaned_data["copy_sections"],
                    exceptions=form.parse_exceptions(year.school),
                )
                if "apply" in request.POST:
                    new_year = rollover_apply(plan=plan, actor=request.user)
                    self.message_user(
                        request,
                        f"{year.school}: {new_year.name} is now the current year "
                        f"({', '.join(f'{n} {k}' for k, n in plan.counts.items())}).",
                        messages.SUCCESS,
                    )
                    return redirect("admin:students_academicyear_changelist")
            except (ValidationError, forms.ValidationError) as exc:
                form.add_error(None, exc)
                plan = None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Roll over {year.school} from {year.name}",
            "year": year,
            "form": form,
            "plan": plan,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/students/rollover.html", context)


@admin.register(Term)
class TermAdmin(SchoolScopedAdmin):
    list_display = ("name", "academic_year", "school", "starts_on", "ends_on")
    list_filter = ("school", "academic_year")
    list_select_related = ("academic_year", "school")


@admin.register(GradeLevel)
class GradeLevelAdmin(SchoolScopedAdmin):
    list_display = ("name", "order", "school")
    list_filter = ("school",)
    ordering = ("school", "order")


@admin.register(Subject)
class SubjectAdmin(SchoolScopedAdmin):
    list_display = ("name", "code", "school")
    list_filter = ("school",)
    search_fields = ("name", "code")


@admin.register(StaffMember)
class StaffMemberAdmin(SchoolScopedAdmin):
    list_display = ("user", "role", "title", "school", "is_active", "created_at")
    list_filter = ("school", "role", "is_active")
    search_fields = ("user__username", "user__first_name", "user__last_name", "user__email")
    list_select_related = ("user", "school")
    readonly_fields = ("created_at",)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        ids = _school_ids(request)
        if db_field.name == "user" and ids is not None:
            # A school administrator picks among their own staff and accounts not yet placed
            # at any school; the usernames of other schools' staff stay out of sight.
            kwargs["queryset"] = (
                get_user_model()
                .objects.filter(
                    Q(staff_memberships__school_id__in=ids) | Q(staff_memberships__isnull=True)
                )
                .distinct()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class SectionTeacherInline(SchoolScopedInline):
    model = SectionTeacher
    autocomplete_fields = ("staff",)


@admin.register(Section)
class SectionAdmin(SchoolScopedAdmin):
    list_display = ("name", "grade_level", "academic_year", "room", "capacity", "school")
    list_filter = ("school", "academic_year", "grade_level")
    search_fields = ("name", "room")
    list_select_related = ("grade_level", "academic_year", "school")
    inlines = [SectionTeacherInline]


class StudentGuardianInline(SchoolScopedInline):
    model = StudentGuardian
    autocomplete_fields = ("guardian",)
    fields = ("guardian", "relationship", "is_primary", "can_pick_up", "lives_with_student")


class EnrollmentInline(SchoolScopedInline):
    model = Enrollment
    fields = ("academic_year", "section", "started_on", "ended_on", "end_reason")
    ordering = ("-started_on",)


@admin.register(Student)
class StudentAdmin(SchoolScopedAdmin):
    list_display = ("student_number", "last_name", "first_name", "grade_level", "status", "school")
    list_filter = ("school", "status", "grade_level")
    search_fields = ("student_number", "first_name", "last_name", "preferred_name")
    list_select_related = ("grade_level", "school")
    readonly_fields = ("created_at", "updated_at")
    inlines = [StudentGuardianInline, EnrollmentInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A transferred student's record is the sending school's history: read-only.
        if obj is not None and obj.status == Student.Status.TRANSFERRED:
            return False
        return super().has_change_permission(request, obj)

    fieldsets = (
        (None, {"fields": ("school", "student_number", "status", "grade_level", "admitted_on")}),
        ("Name", {"fields": ("first_name", "middle_name", "last_name", "preferred_name")}),
        ("Personal", {"fields": ("date_of_birth", "gender", "email", "phone", "address")}),
        ("Care", {"fields": ("medical_notes", "notes")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )


@admin.register(Guardian)
class GuardianAdmin(SchoolScopedAdmin):
    list_display = (
        "last_name",
        "first_name",
        "email",
        "phone",
        "receives_absence_alerts",
        "school",
    )
    list_filter = ("school", "receives_absence_alerts")
    search_fields = ("first_name", "last_name", "email", "phone")


@admin.register(Enrollment)
class EnrollmentAdmin(SchoolScopedAdmin):
    list_display = ("student", "section", "academic_year", "started_on", "ended_on", "school")
    list_filter = ("school", "academic_year", "ended_on")
    search_fields = ("student__first_name", "student__last_name", "student__student_number")
    list_select_related = ("student", "section", "academic_year", "school")
    autocomplete_fields = ("student",)


@admin.register(AttendanceRecord)
class AttendanceRecordAdmin(SchoolScopedAdmin):
    list_display = ("date", "period", "student", "section", "status", "recorded_by", "recorded_at")
    list_filter = ("school", "status", "date")
    search_fields = ("student__first_name", "student__last_name", "student__student_number")
    list_select_related = ("student", "section", "recorded_by")
    date_hierarchy = "date"
    autocomplete_fields = ("student",)
    readonly_fields = ("recorded_by", "recorded_at")
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is waste


@admin.register(Assessment)
class AssessmentAdmin(SchoolScopedAdmin):
    list_display = ("name", "subject", "section", "term", "max_score", "weight", "due_on")
    list_filter = ("school", "term", "subject")
    search_fields = ("name",)
    list_select_related = ("subject", "section", "term")

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        ids = _school_ids(request)
        if not change and ids is not None:
            obj.school_id = ids[0]
        # The service keeps the grades' copy of max_score in step (and refuses to lower it
        # below a recorded score), and writes the audit entry.
        services.assessment_save(assessment=obj, actor=request.user)


@admin.register(Grade)
class GradeAdmin(SchoolScopedAdmin):
    list_display = ("student", "assessment", "score", "max_score", "recorded_by", "updated_at")
    list_filter = ("school", "assessment__term", "assessment__subject")
    search_fields = ("student__first_name", "student__last_name", "assessment__name")
    list_select_related = ("student", "assessment__subject", "assessment__section", "recorded_by")
    readonly_fields = ("max_score", "recorded_by", "updated_at")
    autocomplete_fields = ("student",)
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        obj.max_score = obj.assessment.max_score
        obj.recorded_by = request.user
        super().save_model(request, obj, form, change)


class ReadOnlyHistoryAdmin(SchoolScopedAdmin):
    """History rows are written by services (rollover, transfers, alerts), never by hand."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(GradeLevelChange)
class GradeLevelChangeAdmin(ReadOnlyHistoryAdmin):
    list_display = ("student", "from_level", "to_level", "changed_on", "reason", "recorded_by")
    list_filter = ("school", "reason", "changed_on")
    search_fields = ("student__first_name", "student__last_name", "student__student_number")
    list_select_related = ("student", "from_level", "to_level", "recorded_by")


@admin.register(StudentMove)
class StudentMoveAdmin(ReadOnlyHistoryAdmin):
    list_display = ("student", "kind", "reason_code", "effective_on", "to_school", "recorded_by")
    list_filter = ("school", "kind", "reason_code")
    search_fields = ("student__first_name", "student__last_name", "student__student_number")
    list_select_related = ("student", "to_school", "recorded_by")


@admin.register(AbsenceAlert)
class AbsenceAlertAdmin(ReadOnlyHistoryAdmin):
    """The delivery log of absence e-mails."""

    list_display = ("date", "student", "guardian", "email", "status", "sent_at", "error")
    list_filter = ("school", "status", "date")
    search_fields = ("student__last_name", "guardian__last_name", "email")
    list_select_related = ("student", "guardian")
    date_hierarchy = "date"


@admin.register(AbsenceAlertSettings)
class AbsenceAlertSettingsAdmin(SchoolScopedAdmin):
    list_display = ("school", "enabled", "subject", "reply_to")
    fields = ("school", "enabled", "subject", "body", "reply_to")
