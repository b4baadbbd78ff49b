from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class FilesConfig(AppConfig):
    name = "files"
    verbose_name = "Documents"

    def ready(self) -> None:
        from .roles import files_roles_sync_after_migrate

        post_migrate.connect(files_roles_sync_after_migrate, dispatch_uid="files.roles_sync")
