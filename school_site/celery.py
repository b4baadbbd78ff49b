"""The Celery application. Configuration comes from Django settings (`CELERY_*` names)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "school_site.settings")

app = Celery("school_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _secret_key_required(**_kwargs: object) -> None:
    """Refuse to start without SECRET_KEY, as the web processes do, rather than fail at the
    first task that signs something. (Not at import: every manage.py command imports this.)
    SystemExit, because Celery logs and swallows a signal handler's exceptions."""
    from django.core.exceptions import ImproperlyConfigured

    from school_site.startup import secret_key_require

    try:
        secret_key_require()
    except ImproperlyConfigured as exc:
        raise SystemExit(str(exc)) from exc


# --- row-level security: a task acts for the schools its sender acted for ---------------------
# A task queued inside a request (a report-card batch, an absence e-mail) carries the request's
# schools in a message header and runs inside them, so a task that forgets to filter still
# sees one school. Beat's jobs carry none and act for no school, except those that declare
# they work for the whole district (students.row_security.every_school).
ACTING_HEADER = "schoolhouse_schools"


@before_task_publish.connect
def _carry_acting_schools(headers: dict[str, Any] | None = None, **_kwargs: object) -> None:
    from students.row_security import acting_value

    schools = acting_value()[0]
    if schools and headers is not None:
        headers[ACTING_HEADER] = schools


@task_prerun.connect
def _act_for_carried_schools(task: Any = None, **_kwargs: object) -> None:
    from students.row_security import acting_scope_enter

    request = task.request
    if request.is_eager:
        return  # run in the caller's process, inside the caller's scope
    carried = getattr(request, ACTING_HEADER, None) or (request.headers or {}).get(ACTING_HEADER)
    request.schoolhouse_scope = acting_scope_enter(carried or "")


@task_postrun.connect
def _end_acting(task: Any = None, **_kwargs: object) -> None:
    from students.row_security import acting_scope_exit

    scope = getattr(task.request, "schoolhouse_scope", None)
    if scope is not None:
        acting_scope_exit(scope)
