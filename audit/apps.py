from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # Registration lives here, not in each app's models, so the school-record apps never
        # import the audit machinery (DESIGN.md: dependencies point one way).
        from . import receivers
        from .history import register_models

        register_models()
        receivers.connect()
