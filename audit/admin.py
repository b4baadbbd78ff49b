from __future__ import annotations

from typing import Any

# auditlog's admin registers its LogEntryAdmin for our ModelChange (AUDITLOG_LOGENTRY_MODEL);
# import it first so it is registered before we replace it with the read-only, per-school one.
from auditlog.admin import LogEntryAdmin
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import AuditEvent, ModelChange


class ReadOnlySchoolScopedAdmin(admin.ModelAdmin):
    """The trail is evidence: nobody adds, edits or deletes it from the console, not even a
    superuser, and a school's staff see only their school's entries."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        access = getattr(request, "access", None)
        if not access:
            return qs.none()
        if access.is_district_admin:
            return qs
        return qs.filter(school_id=access.school.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}  # not even the bulk "delete selected"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlySchoolScopedAdmin):
    list_display = ("created_at", "actor_repr", "action", "target_repr", "school_id", "ip_address")
    list_filter = ("action",)
    search_fields = ("actor_repr", "target_repr", "target_id")
    date_hierarchy = "created_at"
    list_select_related = ("actor",)


if admin.site.is_registered(ModelChange):
    admin.site.unregister(ModelChange)


@admin.register(ModelChange)
class ModelChangeAdmin(ReadOnlySchoolScopedAdmin, LogEntryAdmin):  # type: ignore[misc]
    """django-auditlog's entry view (field-by-field old and new values), read-only and scoped."""

    list_display = ["created", "resource_url", "action", "msg_short", "user_url", "school_id"]
