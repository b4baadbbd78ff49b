"""Document permissions of each role group.

The role groups belong to `students` (students/roles.py), which must not know about this
app. Its post_migrate handler *sets* each group's permissions to its own list; ours runs after
it (this app is installed later, so its handler is connected later) and *adds* the document
permissions, after every migrate and every flush of a test database.
"""

from __future__ import annotations

from typing import Any

from students.roles import role_permissions_add

_ALL_DOCUMENT = [
    "files.view_document",
    "files.add_document",
    "files.change_document",
    "files.delete_document",
    "files.view_documentversion",
    "files.add_documentversion",
    "files.view_sensitive_document",
]
FILES_ROLE_PERMISSIONS: dict[str, list[str]] = {
    "District administrator": _ALL_DOCUMENT,
    "School administrator": _ALL_DOCUMENT,
    # Registrars keep the student file: they upload, version and restore, but do not delete.
    "Registrar": [
        "files.view_document",
        "files.add_document",
        "files.change_document",
        "files.view_documentversion",
        "files.add_documentversion",
        "files.view_sensitive_document",
    ],
    # Teachers read their own students' ordinary documents; health, identity, IEP and custody
    # records stay with the office.
    "Teacher": ["files.view_document", "files.view_documentversion"],
    # Auditors read everything in their school, sensitive records included, and change nothing.
    "Auditor": [
        "files.view_document",
        "files.view_documentversion",
        "files.view_sensitive_document",
    ],
}


def files_roles_sync(apps: Any, using: str = "default") -> None:
    role_permissions_add(
        apps, app_label="files", role_permissions=FILES_ROLE_PERMISSIONS, using=using
    )


def files_roles_sync_after_migrate(
    sender: Any, apps: Any = None, using: str = "default", **kwargs: Any
) -> None:
    from django.apps import apps as global_apps

    # `using`: migrate may run against another database alias than the default.
    files_roles_sync(apps or global_apps, using=using)
