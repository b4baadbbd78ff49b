"""API token permissions of the role groups (added after `students`' own sync, as the
documents app does): administrators manage their school's tokens in the admin console."""

from __future__ import annotations

from typing import Any

from students.roles import role_permissions_add

API_ROLE_PERMISSIONS: dict[str, list[str]] = {
    "District administrator": ["api.view_apitoken", "api.add_apitoken", "api.change_apitoken"],
    "School administrator": ["api.view_apitoken", "api.add_apitoken", "api.change_apitoken"],
    # Auditors can see which integrations hold tokens; they create and revoke none.
    "Auditor": ["api.view_apitoken"],
}


def api_roles_sync(apps: Any, using: str = "default") -> None:
    role_permissions_add(apps, app_label="api", role_permissions=API_ROLE_PERMISSIONS, using=using)


def api_roles_sync_after_migrate(
    sender: Any, apps: Any = None, using: str = "default", **kwargs: Any
) -> None:
    from django.apps import apps as global_apps

    api_roles_sync(apps or global_apps, using=using)
