"""Monitoring in the admin console: read-only, for district administrators and superusers.

Slow queries appear twice: every recorded statement, and the summary (one line per
fingerprint with count, p50, p95 and max), which is where to start looking.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from .access import is_monitoring_admin
from .models import (
    AlertState,
    Heartbeat,
    RequestMinute,
    SlowQuery,
    SlowQueryFingerprint,
    SystemSample,
)
from .selectors import slow_query_summary_get


class ReadOnlyMonitoringAdmin(admin.ModelAdmin):
    """Rows written by the platform itself: administrators read them; only a superuser may
    delete (e.g. slow queries after a fix), nobody edits."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_monitoring_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_monitoring_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))


@admin.register(SlowQuery)
class SlowQueryAdmin(ReadOnlyMonitoringAdmin):
    list_display = ("recorded_at", "duration_ms", "route", "short_statement", "fingerprint")
    list_filter = ("route", "database")
    search_fields = ("fingerprint", "statement", "route")
    date_hierarchy = "recorded_at"
    readonly_fields = (
        "recorded_at",
        "fingerprint",
        "statement",
        "duration_ms",
        "route",
        "stack",
        "database",
    )

    @admin.display(description="statement")
    def short_statement(self, obj: SlowQuery) -> str:
        return obj.statement[:120]


SUMMARY_WINDOWS = {"1": 1, "7": 7, "30": 30}


@admin.register(SlowQueryFingerprint)
class SlowQueryFingerprintAdmin(ReadOnlyMonitoringAdmin):
    """The changelist is the aggregate table, not a list of rows."""

    change_list_template = "monitoring/admin/slow_query_summary.html"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        days = request.GET.get("days", "7")
        order = request.GET.get("order", "count")
        since = (
            timezone.now() - datetime.timedelta(days=SUMMARY_WINDOWS[days])
            if days in SUMMARY_WINDOWS
            else None
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Slow queries by fingerprint",
            "summary": slow_query_summary_get(since=since, order=order, limit=200),
            "days": days if days in SUMMARY_WINDOWS else "all",
            "order": order,
            "windows": [("1", "24 hours"), ("7", "7 days"), ("30", "30 days"), ("all", "all")],
            "orders": [("count", "count"), ("total", "total time"), ("max", "slowest")],
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.change_list_template, context)


@admin.register(RequestMinute)
class RequestMinuteAdmin(ReadOnlyMonitoringAdmin):
    list_display = ("minute", "route", "requests", "server_errors", "client_errors")
    list_filter = ("route",)
    date_hierarchy = "minute"


@admin.register(SystemSample)
class SystemSampleAdmin(ReadOnlyMonitoringAdmin):
    list_display = (
        "taken_at",
        "hostname",
        "cpu_percent",
        "memory_percent",
        "disk_percent",
        "db_size_bytes",
        "queue_lengths",
    )
    date_hierarchy = "taken_at"


@admin.register(AlertState)
class AlertStateAdmin(ReadOnlyMonitoringAdmin):
    list_display = (
        "name",
        "is_open",
        "opened_at",
        "resolved_at",
        "last_notified_at",
        "incidents",
        "summary",
    )


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyMonitoringAdmin):
    list_display = ("name", "last_seen", "hostname", "count")
