from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def restore_point_before_risky_operation(
    sender: Any, *, reason: str, school_id: int | None, actor: Any, description: str, **kwargs: Any
) -> None:
    """students.signals.risky_operation: mark the moment before it in the WAL."""
    from .services.physical import restore_point_before

    restore_point_before(reason=reason, description=description, school_id=school_id, actor=actor)


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self) -> None:
        from students.signals import risky_operation

        risky_operation.connect(
            restore_point_before_risky_operation, dispatch_uid="backups.restore_point"
        )
