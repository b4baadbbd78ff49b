"""The role groups and their permissions, in one place.

The data migration 0003 creates them; a `post_migrate` handler keeps them in step after
every `migrate` and every test-database flush, so a permission added to a role here reaches
existing deployments at their next deploy.
"""

from __future__ import annotations

from typing import Any

SCHOOL_MODELS = [
    "school",
    "academicyear",
    "term",
    "gradelevel",
    "subject",
    "staffmember",
    "section",
    "sectionteacher",
    "student",
    "guardian",
    "studentguardian",
    "enrollment",
    "attendancerecord",
    "assessment",
    "grade",
    "gradelevelchange",
    "studentmove",
    "absencealertsettings",
    "absencealert",
]
RECORD_MODELS = [
    "student",
    "guardian",
    "studentguardian",
    "enrollment",
    "gradelevelchange",
    "studentmove",
]
CLASSROOM_MODELS = ["attendancerecord", "assessment", "grade"]
READ_ONLY_BASICS = [
    "school",
    "academicyear",
    "term",
    "gradelevel",
    "subject",
    "section",
    "student",
    "guardian",
    "studentguardian",
    "enrollment",
    "gradelevelchange",
]


def _perms(actions: list[str], models: list[str]) -> list[str]:
    return [f"students.{action}_{model}" for model in models for action in actions]


ROLE_PERMISSIONS: dict[str, list[str]] = {
    "District administrator": _perms(["view", "add", "change", "delete"], SCHOOL_MODELS)
    + ["audit.view_auditevent", "audit.view_modelchange"],
    "School administrator": _perms(["view", "add", "change", "delete"], SCHOOL_MODELS[1:])
    + ["students.view_school", "audit.view_auditevent", "audit.view_modelchange"],
    "Registrar": _perms(["view"], SCHOOL_MODELS)
    + _perms(["add", "change"], RECORD_MODELS + ["section", "sectionteacher"])
    + _perms(["add", "change"], CLASSROOM_MODELS),
    "Teacher": _perms(["view"], READ_ONLY_BASICS)
    + _perms(["view", "add", "change"], CLASSROOM_MODELS)
    + ["students.delete_grade"],
    "Auditor": _perms(["view"], SCHOOL_MODELS)
    + ["audit.view_auditevent", "audit.view_modelchange"],
}


def roles_sync(apps: Any, using: str = "default") -> None:
    """Create the role groups and set their permissions (historical or real `apps`) in the
    database `using`."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    wanted = {code for codes in ROLE_PERMISSIONS.values() for code in codes}
    by_code = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in permission_model.objects.using(using)
        .select_related("content_type")
        .filter(content_type__app_label__in={c.split(".")[0] for c in wanted})
    }
    missing = wanted - set(by_code)
    if missing:  # permissions are created after the models' migrations have run
        return
    managed_apps = {c.split(".")[0] for c in wanted}
    for name, codes in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        # Only this module's apps are managed here (other apps add their own permissions to
        # the same groups), and unchanged rows stay: re-running migrate changes nothing.
        current = set(group.permissions.filter(content_type__app_label__in=managed_apps))
        target = {by_code[c] for c in codes}
        group.permissions.remove(*(current - target))
        group.permissions.add(*(target - current))


def roles_sync_after_migrate(
    sender: Any, apps: Any = None, using: str = "default", **kwargs: Any
) -> None:
    from django.apps import apps as global_apps

    roles_sync(apps or global_apps, using=using)


def role_permissions_add(
    apps: Any, *, app_label: str, role_permissions: dict[str, list[str]], using: str = "default"
) -> None:
    """Add another app's permissions (`"<app_label>.<codename>"`) to the role groups.

    For apps installed after `students` (files, api): their post_migrate handler runs after
    `roles_sync_after_migrate` has *set* each group's own list, and adds theirs on top, after
    every migrate and every flush of a test database. Does nothing until the app's
    permissions exist (they are created after its migrations ran)."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    by_code = {
        f"{app_label}.{p.codename}": p
        for p in permission_model.objects.using(using).filter(content_type__app_label=app_label)
    }
    wanted = {code for codes in role_permissions.values() for code in codes}
    if wanted - set(by_code):
        return
    for name, codes in role_permissions.items():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        group.permissions.add(*[by_code[c] for c in codes])
