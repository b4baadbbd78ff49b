"""What django-axes keys a lockout on, besides the client's address
(school_site.proxies.client_address, shared with the audit trail): the typed username."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def username_of(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    # Usernames are case-sensitive in Django but people type them loosely: "Admin" and
    # "admin" count as one target, so changing case does not buy extra guesses.
    raw = (credentials or {}).get("username")
    if raw is None and request is not None:
        raw = request.POST.get("username")
    return raw.strip().lower() if isinstance(raw, str) else raw
