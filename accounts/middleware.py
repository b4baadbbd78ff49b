"""The session idle timeout and the two-factor gate for administrators."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import NoReverseMatch, reverse

from .services import LAST_SEEN_KEY, confirmed_totp_device, two_factor_pending

# Touching the session on every request would write it every request; a minute's
# precision is plenty for a 30-minute timeout.
LAST_SEEN_RESOLUTION = 60


def _exempt_prefixes() -> tuple[str, ...]:
    prefixes = [
        "/accounts/two-factor/",
        "/" + settings.STATIC_URL.lstrip("/"),
        "/health/",
        "/metrics",
    ]
    for name in ("login", "logout"):
        # A URLconf without them (some tests route to a few views only) exempts nothing more.
        with contextlib.suppress(NoReverseMatch):
            prefixes.append(reverse(name))
    return tuple(prefixes)


class SessionIdleTimeoutMiddleware:
    """Log out a session that has been idle longer than SESSION_IDLE_TIMEOUT seconds."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        timeout = settings.SESSION_IDLE_TIMEOUT
        if timeout and LAST_SEEN_KEY in request.session:
            now = int(time.time())
            last_seen = request.session[LAST_SEEN_KEY]
            if now - last_seen > timeout:
                logout(request)
                messages.info(request, "You were logged out after a period of inactivity.")
                return HttpResponseRedirect(
                    f"{reverse('login')}?{urlencode({'next': request.get_full_path()})}"
                )
            if now - last_seen >= LAST_SEEN_RESOLUTION:
                request.session[LAST_SEEN_KEY] = now
        elif timeout and SESSION_KEY in request.session:
            # A session from before the timeout existed: its clock starts now.
            request.session[LAST_SEEN_KEY] = int(time.time())
        return self.get_response(request)


class TwoFactorRequiredMiddleware:
    """An administrator who has typed the password but no code yet is sent to set up an
    authenticator (first time) or to enter a code; nothing else is served to them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if two_factor_pending(request) and not request.path_info.startswith(_exempt_prefixes()):
            if request.path_info.startswith("/api/"):
                return JsonResponse({"detail": "Two-factor verification required."}, status=403)
            name = "verify" if confirmed_totp_device(request.user) else "setup"
            target = reverse(f"accounts:two_factor_{name}")
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)
