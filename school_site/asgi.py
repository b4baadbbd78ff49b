"""ASGI entry point, for servers that speak ASGI (uvicorn, daphne)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "school_site.settings")

from school_site.startup import secret_key_require  # noqa: E402 - needs the settings module

secret_key_require()
application = get_asgi_application()
