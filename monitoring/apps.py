from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from celery.signals import task_postrun, task_prerun
        from django.db.backends.signals import connection_created

        connection_created.connect(_time_queries, dispatch_uid="monitoring.time_queries")
        task_prerun.connect(_task_scope_open, dispatch_uid="monitoring.task_scope_open")
        task_postrun.connect(_task_scope_close, dispatch_uid="monitoring.task_scope_close")


def _time_queries(sender: Any, connection: Any, **kwargs: Any) -> None:
    from .slow_queries import install

    install(connection)


# Celery sends prerun and postrun in the thread (and context) that runs the task; the token is
# kept per task id so an eager task inside a request hands the request's scope back.
_task_tokens: dict[str, Any] = {}


def _task_scope_open(sender: Any = None, task_id: str = "", task: Any = None, **kw: Any) -> None:
    from .context import Scope, current_scope

    name = getattr(task, "name", None) or getattr(sender, "name", "") or "task"
    _task_tokens[task_id] = current_scope.set(Scope(route=f"task:{name}"))


def _task_scope_close(sender: Any = None, task_id: str = "", **kw: Any) -> None:
    from .context import current_scope
    from .slow_queries import scope_flush

    token = _task_tokens.pop(task_id, None)
    scope = current_scope.get()
    if token is not None:
        try:
            current_scope.reset(token)
        except ValueError:  # set in another context: nothing to restore
            current_scope.set(None)
    if scope is not None:
        scope_flush(scope)
