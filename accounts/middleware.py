"""The session idle timeout, the two-factor gate for administrators, and no browser copies
of signed-in pages."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse

from .decorators import two_factor_gate
from .services import LAST_SEEN_KEY

# Touching the session on every request would write it every request; a minute's
# precision is plenty for a 30-minute timeout.
LAST_SEEN_RESOLUTION = 60


def _exempt_prefixes() -> tuple[str, ...]:
    prefixes = [
        "/accounts/two-factor/",
        "/" + settings.STATIC_URL.lstrip("/"),
        # Probes: they answer by address or token, never by session, and show no details.
        # Not /health/ itself: its dashboard is for administrators, so it is gated too.
        "/health/live/",
        "/health/ready/",
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
        if not request.path_info.startswith(_exempt_prefixes()):
            refused = two_factor_gate(request)
            if refused is not None:
                return refused
        return self.get_response(request)


class PrivatePagesMiddleware:
    """No copy of a signed-in user's page is kept: a school computer's back button, or the
    next person at it, must not show a pupil's profile, a roster or an export from the browser's
    cache. Responses to signed-in users (a session, or an API token) get `Cache-Control:
    no-store`; every other dynamic response `private`, so no shared cache between the school
    and us keeps it. A view that sets its own Cache-Control keeps it. Static files never get
    here (WhiteNoise answers them earlier)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Cache-Control" not in response:
            # DRF authenticates API tokens inside the view and sets request.user there too.
            user = getattr(request, "user", None)
            signed_in = user is not None and user.is_authenticated
            response["Cache-Control"] = "no-store" if signed_in else "private"
        return response
