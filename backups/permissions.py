"""Who may see and run backups: superusers and district administrators only.

A backup holds every school's records, so no school-level role (not even a school
administrator) may see, run, verify or download one.
"""

from __future__ import annotations

from typing import Any


def may_manage_backups(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    from students.tenancy import DISTRICT_ADMIN_GROUP

    return bool(user.is_staff and user.groups.filter(name=DISTRICT_ADMIN_GROUP).exists())
