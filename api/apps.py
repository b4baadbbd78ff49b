from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "REST API"

    def ready(self) -> None:
        from .roles import api_roles_sync_after_migrate

        post_migrate.connect(api_roles_sync_after_migrate, dispatch_uid="api.roles_sync")
