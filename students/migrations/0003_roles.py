"""Create the role groups and their permissions.

Roles are Django groups so an administrator can read (and, carefully, adjust) them in the
admin. A user's effective permissions in a school come from the group of their role there
(students.tenancy.SchoolAccess), so a teacher at one school and registrar at another gets
the right rights in each.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

SCHOOL_MODELS = [
    "school", "academicyear", "term", "gradelevel", "subject", "staffmember", "section",
    "sectionteacher", "student", "guardian", "studentguardian", "enrollment",
    "attendancerecord", "assessment", "grade",
]
RECORD_MODELS = ["student", "guardian", "studentguardian", "enrollment"]
CLASSROOM_MODELS = ["attendancerecord", "assessment", "grade"]


def perms(actions, models):
    return [(f"{action}_{model}") for model in models for action in actions]


ROLES = {
    "District administrator": perms(["view", "add", "change", "delete"], SCHOOL_MODELS)
    + ["audit.view_auditevent"],
    "School administrator": perms(["view", "add", "change", "delete"], SCHOOL_MODELS[1:])
    + ["view_school", "audit.view_auditevent"],
    "Registrar": perms(["view"], SCHOOL_MODELS)
    + perms(["add", "change"], RECORD_MODELS + ["section", "sectionteacher"])
    + perms(["add", "change"], CLASSROOM_MODELS),
    "Teacher": perms(["view"], ["school", "academicyear", "term", "gradelevel", "subject",
                                "section", "student", "guardian", "studentguardian", "enrollment"])
    + perms(["view", "add", "change"], CLASSROOM_MODELS) + ["delete_grade"],
    "Auditor": perms(["view"], SCHOOL_MODELS) + ["audit.view_auditevent"],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        wanted = []
        for code in codenames:
            app_label, codename = code.split(".") if "." in code else ("students", code)
            wanted.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("students", "0002_search_indexes"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
