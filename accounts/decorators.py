"""The second factor in front of a page: the gate every page passes, and a fresh check before a
sensitive action."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from .services import confirmed_totp_device, otp_verified_recently, two_factor_pending


def two_factor_gate(request: HttpRequest) -> HttpResponse | None:
    """What an administrator who has typed the password but no code yet gets instead of the
    page: the authenticator set-up (first time) or the code page, and then back; a JSON 403
    under /api/. None for everyone else."""
    if not two_factor_pending(request):
        return None
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": "Two-factor verification required."}, status=403)
    name = "verify" if confirmed_totp_device(request.user) else "setup"
    target = reverse(f"accounts:two_factor_{name}")
    return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")


def otp_recheck_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let the view run only if a code was accepted in this session within
    ACCOUNTS_OTP_RECHECK_MINUTES; otherwise ask for one and come back. A user with no
    authenticator is sent to set one up first."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not otp_verified_recently(request):
            query = urlencode({"next": request.get_full_path(), "recheck": "1"})
            return HttpResponseRedirect(f"{reverse('accounts:two_factor_verify')}?{query}")
        return view(request, *args, **kwargs)

    return wrapper
