"""The Celery application. Configuration comes from Django settings (`CELERY_*` names)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import beat_init, worker_init

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
