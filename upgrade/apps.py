from __future__ import annotations

from django.apps import AppConfig


class UpgradeConfig(AppConfig):
    name = "upgrade"
    verbose_name = "Upgrade from SQLite"
