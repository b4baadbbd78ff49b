"""The admin site asks administrators for their second factor too; lockouts are lifted by
deleting the access attempt (django-axes' admin, with Django's confirmation page) or with
the "Unlock" action below."""

from __future__ import annotations

from collections.abc import Callable

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.services import audit_record

from .services import two_factor_pending


def admin_permission_with_otp(
    has_permission: Callable[[HttpRequest], bool],
) -> Callable[[HttpRequest], bool]:
    """Wrap AdminSite.has_permission: an administrator still owing a code is refused (the
    middleware normally sends them to the code page before they get here)."""

    def check(request: HttpRequest) -> bool:
        return has_permission(request) and not two_factor_pending(request)

    return check


@admin.action(description="Unlock: forget these failed log-ins so the user can log in")
def unlock(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    for attempt in queryset:
        audit_record(
            actor=request.user,
            action="lockout_reset",
            changes={
                "username": ["", attempt.username or ""],
                "ip": ["", attempt.ip_address or ""],
            },
        )
    count, _ = queryset.delete()
    messages.success(request, f"Unlocked {count} username/address pair(s).")


class UnlockingAccessAttemptAdmin(AccessAttemptAdmin):
    actions = [unlock]


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, UnlockingAccessAttemptAdmin)
