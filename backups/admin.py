"""Backups in the admin console: runs (read-only, with "Run backup now", "Verify" and a
download link), the retention policies, restore points, and the restore drills' marks and
receipts (read-only). Visible to superusers and district
administrators only; a backup is not school-owned, so the school-scoped admin does not apply.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from audit.services import audit_record

from .models import BackupRun, DrillMark, DrillReceipt, RestorePoint, RetentionPolicy
from .permissions import may_manage_backups


class BackupAdminMixin:
    def has_module_permission(self, request: HttpRequest) -> bool:
        return may_manage_backups(request.user)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Reading the request's access is what makes it act for the user's schools (row-level
        # security; it is lazy, school_site.middleware): a district administrator's are every
        # school, so a school's restore points and drill receipts show in a change view too.
        # Who may see backups at all is has_view_permission's; an install with no school
        # yet has no access to read, and its backups still show.
        bool(getattr(request, "access", None))
        return super().get_queryset(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_manage_backups(request.user)


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(value)


@admin.register(BackupRun)
class BackupRunAdmin(BackupAdminMixin, admin.ModelAdmin):
    list_display = [
        "id", "kind", "backup_type", "label", "status", "verification", "started_at",
        "duration_display",
        "stored_size_display", "destination_names", "key_id",
    ]  # fmt: skip
    list_filter = ["kind", "status", "verification", "trigger"]
    date_hierarchy = "started_at"
    actions = ["verify_selected"]
    change_list_template = "backups/admin/change_list.html"
    change_form_template = "backups/admin/change_form.html"
    fieldsets = [
        (None, {"fields": ["kind", "trigger", "status", "started_at", "finished_at",
                           "duration_display", "worker", "requested_by", "error"]}),
        ("Object", {"fields": ["object_key", "raw_size_display", "stored_size_display", "sha256",
                               "destinations_display", "key_id", "pruned_at"]}),
        ("Database", {"fields": ["engine", "server_version", "schema_hash",
                                 "migrations_display", "row_counts_display"]}),
        ("Media", {"fields": ["objects_copied", "objects_present"]}),
        ("Physical (pgBackRest)", {"fields": ["backup_type", "label", "prior_label", "wal_start",
                                              "wal_stop", "lsn_start", "lsn_stop"]}),
        ("Verification", {"fields": ["verification", "verified_at", "verification_display"]}),
    ]  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f for fs in self.fieldsets for f in fs[1]["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # retention deletes backups, together with their objects

    @admin.display(description="duration")
    def duration_display(self, obj: BackupRun) -> str:
        return str(obj.duration).split(".")[0] if obj.duration else "—"

    @admin.display(description="stored size")
    def stored_size_display(self, obj: BackupRun) -> str:
        return _size(obj.stored_size)

    @admin.display(description="raw size")
    def raw_size_display(self, obj: BackupRun) -> str:
        return _size(obj.raw_size)

    @admin.display(description="destinations")
    def destination_names(self, obj: BackupRun) -> str:
        return ", ".join(
            d["name"] + (" (pruned)" if d.get("pruned_at") else "") for d in obj.destinations
        )

    @admin.display(description="destinations")
    def destinations_display(self, obj: BackupRun) -> str:
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><b>{}</b>: {} — {}</li>",
                (
                    (
                        d.get("name"),
                        d.get("key") or d.get("label") or d.get("repo"),
                        "pruned"
                        if d.get("pruned_at")
                        else ("confirmed" if d.get("confirmed") else "not confirmed"),
                    )
                    for d in obj.destinations
                ),
            ),
        )

    @admin.display(description="migrations")
    def migrations_display(self, obj: BackupRun) -> str:
        return ", ".join(f"{app}: {names[-1]}" for app, names in sorted(obj.migrations.items()))

    @admin.display(description="rows at dump time")
    def row_counts_display(self, obj: BackupRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.row_counts, indent=1, sort_keys=True))

    @admin.display(description="verification report")
    def verification_display(self, obj: BackupRun) -> str:
        if not obj.verification_report:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(obj.verification_report, indent=1))

    # -- actions ---------------------------------------------------------------------------
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("run-backup/", wrap(self.run_backup_view), name="backups_backuprun_run"),
            path("<int:pk>/verify/", wrap(self.verify_view), name="backups_backuprun_verify"),
            path(
                "<int:pk>/download-link/",
                wrap(self.download_link_view),
                name="backups_backuprun_download_link",
            ),
            *super().get_urls(),
        ]

    def _guard(self, request: HttpRequest) -> None:
        if not may_manage_backups(request.user):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied

    def run_backup_view(self, request: HttpRequest) -> HttpResponse:
        """Confirmation page; the POST enqueues the backup once the transaction commits."""
        self._guard(request)
        if request.method == "POST":
            from .tasks import backup_database, backup_media

            kind = request.POST.get("kind", "database")
            task = backup_media if kind == "media" else backup_database
            user_id = request.user.pk
            with transaction.atomic():
                audit_record(actor=request.user, action="backup_request", changes={"kind": kind})
                transaction.on_commit(lambda: task.delay(trigger="manual", user_id=user_id))
            self.message_user(
                request, f"A {kind} backup was queued; it appears here when it starts."
            )
            return HttpResponseRedirect(reverse("admin:backups_backuprun_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Run a backup now"}  # fmt: skip
        return TemplateResponse(request, "backups/admin/confirm_run.html", context)

    def _enqueue_verify(self, request: HttpRequest, runs: list[BackupRun]) -> None:
        from .tasks import verify_backup

        user_id = request.user.pk
        with transaction.atomic():
            for run in runs:
                audit_record(actor=request.user, action="backup_verify_request", target=run)
                transaction.on_commit(functools.partial(verify_backup.delay, run.pk, user_id))

    def verify_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._guard(request)
        run = get_object_or_404(BackupRun, pk=pk)
        if request.method == "POST":
            self._enqueue_verify(request, [run])
            self.message_user(request, f"Verification of backup #{run.pk} was queued.")
            return HttpResponseRedirect(reverse("admin:backups_backuprun_change", args=[run.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Verify backups", "runs": [run], "single": True}  # fmt: skip
        return TemplateResponse(request, "backups/admin/confirm_verify.html", context)

    @admin.action(description="Verify selected database backups (restore drill)")
    def verify_selected(self, request: HttpRequest, queryset: QuerySet[BackupRun]) -> Any:
        runs = [r for r in queryset if r.kind == BackupRun.Kind.DATABASE and r.is_restorable]
        if request.POST.get("confirmed") == "yes":
            self._enqueue_verify(request, runs)
            self.message_user(request, f"{len(runs)} verification(s) queued.")
            return None
        if not runs:
            self.message_user(
                request, "None of those is a finished database backup.", messages.WARNING
            )
            return None
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Verify backups", "runs": runs,
                   "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME}  # fmt: skip
        return TemplateResponse(request, "backups/admin/confirm_verify.html", context)

    def download_link_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._guard(request)
        from .services import LinkRefused, backup_download_link_create

        run = get_object_or_404(BackupRun, pk=pk)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:backups_backuprun_change", args=[pk]))
        try:
            url = backup_download_link_create(run=run, actor=request.user)
        except LinkRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:backups_backuprun_change", args=[pk]))
        return HttpResponseRedirect(url)


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(BackupAdminMixin, admin.ModelAdmin):
    list_display = ["destination", "keep_daily", "keep_weekly", "keep_monthly", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return may_manage_backups(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_manage_backups(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_manage_backups(request.user)

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,
            action="update" if change else "create",
            target=obj,
            changes={name: str(form.cleaned_data.get(name)) for name in form.changed_data},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(actor=request.user, action="delete", target=obj)
        super().delete_model(request, obj)


@admin.register(RestorePoint)
class RestorePointAdmin(BackupAdminMixin, admin.ModelAdmin):
    """Named moments a restore can go back to (`restore_backup --to-restore-point NAME`):
    made before rollovers, imports and restores, and with `pitr restore-point`."""

    list_display = ["name", "reason", "created_at", "lsn", "school_id", "requested_by"]
    list_filter = ["reason"]
    search_fields = ["name", "description"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "name", "reason", "description", "created_at", "lsn", "wal_file", "school_id",
        "requested_by",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the WAL keeps them; the record goes with the retention of the WAL


class _ReadOnlyAdmin(BackupAdminMixin, admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DrillReceipt)
class DrillReceiptAdmin(_ReadOnlyAdmin):
    """What each weekly restore drill proved, per school: the mark restored to, how far the
    recovered state lay from it, how long the restore took, and whether every table of the
    school matched (`manage.py pitr drill` runs one now)."""

    list_display = [
        "finished_at", "drill", "school_display", "result", "target_time",
        "data_loss_seconds", "restore_seconds", "archive_lag_seconds", "tables", "rows",
    ]  # fmt: skip
    list_filter = ["result"]
    search_fields = ["drill", "school_name", "restore_point"]
    date_hierarchy = "finished_at"
    readonly_fields = (
        "drill", "school_id", "school_name", "result", "restore_point", "target_time",
        "recovered_to", "data_loss_seconds", "restore_seconds", "archive_lag_seconds",
        "tables", "rows", "started_at", "finished_at", "details_display",
    )  # fmt: skip
    fields = readonly_fields

    @admin.display(description="school", ordering="school_name")
    def school_display(self, obj: DrillReceipt) -> str:
        return obj.school_name or (f"#{obj.school_id}" if obj.school_id else "(district)")

    @admin.display(description="details")
    def details_display(self, obj: DrillReceipt) -> str:
        if not obj.details:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=1, default=str))


@admin.register(DrillMark)
class DrillMarkAdmin(_ReadOnlyAdmin):
    """Fingerprinted restore points the drill restores to (made by beat at random moments,
    or with `manage.py pitr mark`); `lock seconds` is how long school writes waited."""

    list_display = ["name", "created_at", "lsn", "lock_seconds", "fingerprint_seconds", "schools"]
    date_hierarchy = "created_at"
    readonly_fields = (
        "name", "created_at", "lsn", "wal_file", "lock_seconds", "fingerprint_seconds",
        "fingerprint_display",
    )  # fmt: skip
    fields = readonly_fields

    @admin.display(description="schools")
    def schools(self, obj: DrillMark) -> int:
        return len([key for key in obj.fingerprint.get("schools", {}) if key])

    @admin.display(description="fingerprint")
    def fingerprint_display(self, obj: DrillMark) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.fingerprint, indent=1, sort_keys=True))
