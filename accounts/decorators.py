"""A fresh second-factor check before a sensitive action."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from .services import otp_verified_recently


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
