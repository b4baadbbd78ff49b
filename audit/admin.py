from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail is evidence, so nobody edits or deletes it from the console."""

    list_display = ("created_at", "actor_repr", "action", "target_repr", "school_id", "ip_address")
    list_filter = ("action",)
    search_fields = ("actor_repr", "target_repr", "target_id")
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        qs = super().get_queryset(request)
        access = getattr(request, "access", None)
        if not access:
            return qs.none()
        if access.is_district_admin:
            return qs
        return qs.filter(school_id=access.school.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
