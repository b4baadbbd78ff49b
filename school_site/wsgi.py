"""WSGI entry point for gunicorn (`gunicorn -c docker/gunicorn.conf.py school_site.wsgi`)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "school_site.settings")

from school_site.startup import secret_key_require  # noqa: E402 - needs the settings module

secret_key_require()
application = get_wsgi_application()
