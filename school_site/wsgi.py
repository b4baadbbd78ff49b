"""WSGI entry point for gunicorn (`gunicorn -c docker/gunicorn.conf.py school_site.wsgi`)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "school_site.settings")
application = get_wsgi_application()
