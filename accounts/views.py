"""Two-factor set-up and verification, the account page, the password change."""

from __future__ import annotations

from base64 import b32encode
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django_otp.plugins.otp_static.models import StaticToken

from audit.services import audit_record

from .forms import CodeForm
from .policy import two_factor_required
from .services import (
    backup_codes_regenerate,
    confirmed_totp_device,
    otp_session_verify,
    totp_device_confirm,
    totp_device_pending,
)


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("students:dashboard")


def _with_next(name: str, request: HttpRequest) -> str:
    return f"{reverse(name)}?{urlencode({'next': _next_url(request)})}"


def _qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")


@never_cache
@login_required
@sensitive_post_parameters("token")
def two_factor_setup(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator app: scan the QR code, type its first code, keep the
    backup codes."""
    if confirmed_totp_device(request.user) is not None:
        return redirect(_with_next("accounts:two_factor_verify", request))
    device = totp_device_pending(user=request.user)  # type: ignore[arg-type]
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not device.verify_is_allowed()[0]:
            form.add_error("token", "Too many wrong codes: wait a minute before trying again.")
        elif codes := totp_device_confirm(
            request=request, device=device, token=form.cleaned_data["token"]
        ):
            return render(
                request, "accounts/backup_codes.html", {"codes": codes, "next": _next_url(request)}
            )
        else:
            form.add_error(
                "token", "That code did not match. Check the phone's clock; type the newest code."
            )
    secret = b32encode(device.bin_key).decode()
    return render(
        request,
        "accounts/two_factor_setup.html",
        {
            "form": form,
            # The SVG is generated here from our own data, not from user input.
            "qr_svg": mark_safe(_qr_svg(device.config_url)),  # noqa: S308
            "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)],
            "next": _next_url(request),
        },
    )


@never_cache
@login_required
@sensitive_post_parameters("token")
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """Enter a code after the password, or again before a sensitive action."""
    if confirmed_totp_device(request.user) is None:
        return redirect(_with_next("accounts:two_factor_setup", request))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        reason = otp_session_verify(request=request, token=form.cleaned_data["token"])
        if not reason:
            return HttpResponseRedirect(_next_url(request))
        form.add_error("token", reason)
    return render(
        request,
        "accounts/two_factor_verify.html",
        {"form": form, "next": _next_url(request), "recheck": "recheck" in request.GET},
    )


@never_cache
@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own security settings: two-factor state, backup codes, password."""
    if request.method == "POST" and request.POST.get("action") == "backup_codes":
        if confirmed_totp_device(request.user) is None:
            return redirect("accounts:two_factor_setup")
        codes = backup_codes_regenerate(user=request.user)  # type: ignore[arg-type]
        return render(
            request,
            "accounts/backup_codes.html",
            {"codes": codes, "next": reverse("accounts:account")},
        )
    device = confirmed_totp_device(request.user)
    return render(
        request,
        "accounts/account.html",
        {
            "device": device,
            "required": two_factor_required(request.user),
            "backup_codes_left": StaticToken.objects.filter(
                device__user=request.user, device__confirmed=True
            ).count(),
        },
    )


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change (it keeps this session logged in and ends the others),
    written to the audit trail."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:account")
    form_class = PasswordChangeForm

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        response = super().form_valid(form)
        user = self.request.user
        audit_record(actor=user, action="password_change", target=user)  # type: ignore[arg-type]
        messages.success(self.request, "Your password was changed.")
        return response
