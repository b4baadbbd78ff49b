from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class SchoolPerms:
    """The role's permissions at the current school, for templates, as Django's `perms` is
    for the user's: `{% if school_perms.students.add_attendancerecord %}`. Built from
    `request.access` (students.tenancy), which the views check, so a page shows a button
    exactly when its target would let this role in; `perms` unites the user's groups of
    every school they work at."""

    def __init__(self, access: Any) -> None:
        self._access = access

    def __getitem__(self, app_label: str) -> _AppPerms:
        return _AppPerms(self._access, app_label)

    def __contains__(self, perm: str) -> bool:
        return bool(self._access) and self._access.has_perm(perm)

    def __bool__(self) -> bool:
        return bool(self._access)


class _AppPerms:
    def __init__(self, access: Any, app_label: str) -> None:
        self._access, self._app_label = access, app_label

    def __getitem__(self, codename: str) -> bool:
        return bool(self._access) and self._access.has_perm(f"{self._app_label}.{codename}")

    def __bool__(self) -> bool:
        return False  # `{% if school_perms.students %}` says nothing; ask for a permission


def current_school(request: HttpRequest) -> dict[str, Any]:
    access = getattr(request, "access", None)
    return {"access": access if access else None, "school_perms": SchoolPerms(access)}
