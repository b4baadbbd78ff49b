"""Create the role groups and their permissions (definitions: students/roles.py).

Roles are Django groups so an administrator can read them in the admin. A user's effective
permissions in a school come from the group of their role there (students.tenancy).
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

from students.roles import ROLE_PERMISSIONS, roles_sync


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps, using=schema_editor.connection.alias)
        app_config.models_module = None
    roles_sync(apps, using=schema_editor.connection.alias)


def drop_roles(apps, schema_editor):
    groups = apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias)
    groups.filter(name__in=list(ROLE_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("students", "0002_search_indexes"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
