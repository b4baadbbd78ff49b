"""Start-up checks of the processes that serve: web (WSGI/ASGI), Celery worker and beat.

The settings load without a SECRET_KEY, so commands that never sign anything
(`makemigrations --check`, `showmigrations`, `sqlmigrate`, `help`) work on a fresh checkout.
Anything that signs (sessions, CSRF, signed download links) needs the key: Django refuses
it at first use, and these entry points refuse to start without it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_HELP = (
    "SECRET_KEY is not set. Set it to a long random value (at least 50 characters), "
    "or set DEBUG=true for a local development run."
)


def secret_key_require() -> None:
    """Raise ImproperlyConfigured, with what to do about it, when SECRET_KEY is empty."""
    try:
        key = settings.SECRET_KEY  # Django raises for an empty key on access
    except ImproperlyConfigured:
        key = ""
    if not key:
        raise ImproperlyConfigured(_HELP)
