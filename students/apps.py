from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class StudentsConfig(AppConfig):
    name = "students"
    verbose_name = "School records"

    def ready(self) -> None:
        from .cache import school_cache_receivers_connect
        from .identity import identity_receivers_connect
        from .roles import roles_sync_after_migrate
        from .row_security import row_security_sync_after_migrate

        identity_receivers_connect()
        school_cache_receivers_connect()
        # After every migrate: every school-owned table (of any app) has its policy.
        post_migrate.connect(
            row_security_sync_after_migrate, sender=self, dispatch_uid="students.row_security"
        )

        # After every migrate (and every flush of a test database) the role groups exist
        # and carry the permissions students/roles.py gives them.
        post_migrate.connect(roles_sync_after_migrate, dispatch_uid="students.roles_sync")
