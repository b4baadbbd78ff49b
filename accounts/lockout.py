"""What django-axes keys a lockout on: the client address and the typed username."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from audit.context import client_ip as _audit_client_ip


def client_ip(request: HttpRequest) -> str | None:
    """The address the audit trail records, so a lockout and its audit entries agree."""
    return _audit_client_ip(request)


def username_of(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    # Usernames are case-sensitive in Django but people type them loosely: "Admin" and
    # "admin" count as one target, so changing case does not buy extra guesses.
    raw = (credentials or {}).get("username")
    if raw is None and request is not None:
        raw = request.POST.get("username")
    return raw.strip().lower() if isinstance(raw, str) else raw
