"""Who must use two-factor authentication."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

from students.models import StaffMember
from students.tenancy import DISTRICT_ADMIN_GROUP


def two_factor_required(user: User | AnonymousUser) -> bool:
    """District administrators (superusers count as such) and school administrators: the
    accounts that can change every record of a school, its staff and its backups."""
    if not user.is_authenticated:
        return False
    if getattr(user, "is_superuser", False):
        return True
    return (
        user.groups.filter(name=DISTRICT_ADMIN_GROUP).exists()
        or StaffMember.objects.filter(
            user=user, role=StaffMember.Role.SCHOOL_ADMIN, is_active=True
        ).exists()
    )
