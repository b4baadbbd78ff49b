"""Who must use two-factor authentication."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

from students.models import StaffMember
from students.row_security import acting_for
from students.tenancy import DISTRICT_ADMIN_GROUP


def two_factor_required(user: User | AnonymousUser) -> bool:
    """District administrators (superusers count as such) and school administrators: the
    accounts that can change every record of a school, its staff and its backups."""
    if not user.is_authenticated:
        return False
    if getattr(user, "is_superuser", False):
        return True
    if user.groups.filter(name=DISTRICT_ADMIN_GROUP).exists():
        return True
    # Asked before any school is chosen: row-level security admits a user's own memberships.
    with acting_for(user_id=user.pk):
        return StaffMember.objects.filter(
            user=user, role=StaffMember.Role.SCHOOL_ADMIN, is_active=True
        ).exists()
