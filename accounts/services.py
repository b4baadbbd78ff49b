"""Two-factor devices, their verification in a session, and the operator check of a restore.

Every change of a user's second factor, and every wrong code, goes to the audit trail.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.services import audit_record

from .policy import two_factor_required

# Session keys. REQUIRED: whether this log-in must pass two-factor (decided at log-in);
# VERIFIED_AT: epoch seconds of the last accepted code (the backup download re-check);
# LAST_SEEN: epoch seconds of the last request (idle timeout), refreshed once a minute.
REQUIRED_KEY = "accounts_2fa_required"
VERIFIED_AT_KEY = "accounts_otp_verified_at"
LAST_SEEN_KEY = "accounts_last_seen"
BACKUP_CODE_COUNT = 10


class OperatorRefused(Exception):
    """The operator named for a restore may not run it (unknown, not an admin, bad code)."""


def session_start(sender: Any, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> None:
    """On every log-in: decide once whether this session needs two-factor, start the idle
    clock. (Django has already cycled the session key, so a planted one is worthless.)"""
    request.session[REQUIRED_KEY] = two_factor_required(user)  # type: ignore[arg-type]
    request.session[LAST_SEEN_KEY] = int(time.time())


def two_factor_pending(request: HttpRequest) -> bool:
    """True while a user who must use two-factor has not given a code in this session."""
    user = request.user
    if not user.is_authenticated:
        return False
    required = request.session.get(REQUIRED_KEY)
    if required is None:  # a session from before two-factor existed
        required = request.session[REQUIRED_KEY] = two_factor_required(user)
    return bool(required) and not user.is_verified()  # type: ignore[union-attr,attr-defined]


def confirmed_totp_device(user: User | AnonymousUser) -> TOTPDevice | None:
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def otp_verified_recently(request: HttpRequest, *, minutes: int | None = None) -> bool:
    """Whether a code was accepted in this session within the last `minutes`."""
    minutes = settings.ACCOUNTS_OTP_RECHECK_MINUTES if minutes is None else minutes
    if not getattr(request.user, "is_verified", lambda: False)():
        return False
    verified_at = request.session.get(VERIFIED_AT_KEY, 0)
    return time.time() - verified_at <= minutes * 60


def session_mark_verified(*, request: HttpRequest, device: Device) -> None:
    """Record in the session that `device` verified the user, as django-otp's login does,
    plus the time, for the re-check before sensitive actions."""
    otp_login(request, device)
    request.session[VERIFIED_AT_KEY] = int(time.time())


def session_mark_verified_raw(*, session: SessionBase, device: Device) -> None:
    """The same marks on a session object with no request (test clients, see conftest)."""
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[VERIFIED_AT_KEY] = int(time.time())


@transaction.atomic
def totp_device_pending(*, user: User) -> TOTPDevice:
    """The user's unconfirmed authenticator being set up (one at a time; reloading the
    set-up page shows the same key, so a phone that already scanned it still works)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def _backup_codes_replace(*, user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    return codes


@transaction.atomic
def totp_device_confirm(
    *, request: HttpRequest, device: TOTPDevice, token: str
) -> list[str] | None:
    """Confirm a new authenticator with its first code. Returns fresh backup codes (shown
    once), or None when the code is wrong."""
    user = request.user
    if not isinstance(user, User) or device.user_id != user.pk:
        raise PermissionDenied("That authenticator belongs to another account.")
    allowed, _data = device.verify_is_allowed()
    if not allowed:
        return None
    if not device.verify_token(token.strip()):
        audit_record(
            actor=user, action="2fa_verify_failed", target=device, changes={"step": ["", "setup"]}
        )
        return None
    # Any earlier authenticator goes: one phone at a time, the one just proven.
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _backup_codes_replace(user=user)
    session_mark_verified(request=request, device=device)
    audit_record(actor=user, action="2fa_setup", target=device)
    return codes


def _device_for_code(user: User, token: str) -> Device | None:
    """Six digits go to the authenticator, anything else (8 letters and digits) to the
    backup codes."""
    if token.isdigit() and len(token) == 6:
        return confirmed_totp_device(user)
    return StaticDevice.objects.filter(user=user, confirmed=True).first()


@transaction.atomic
def otp_code_check(*, user: User, token: str) -> tuple[Device | None, str]:
    """Check a code of `user`'s. Returns (device, "") when accepted, else (None, reason).
    Wrong codes slow the device down (django-otp throttling) and are audited."""
    token = token.strip().replace(" ", "")
    device = _device_for_code(user, token)
    if device is None:
        audit_record(actor=user, action="2fa_verify_failed", changes={"reason": ["", "no device"]})
        return None, "That is not a code from your authenticator app or a backup code."
    allowed, _data = device.verify_is_allowed()
    if not allowed:
        audit_record(
            actor=user,
            action="2fa_verify_failed",
            target=device,
            changes={"reason": ["", "throttled"]},
        )
        return None, "Too many wrong codes: wait a minute before trying again."
    if not device.verify_token(token):
        audit_record(actor=user, action="2fa_verify_failed", target=device)
        return None, "That code is wrong or has expired. Try the newest one."
    if isinstance(device, StaticDevice):
        audit_record(
            actor=user,
            action="2fa_backup_code_used",
            target=device,
            changes={"remaining": ["", str(device.token_set.count())]},
        )
    return device, ""


def otp_session_verify(*, request: HttpRequest, token: str) -> str:
    """Verify a code for the logged-in user of `request`; "" on success, else the reason."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Log in first.")
    device, reason = otp_code_check(user=user, token=token)
    if device is not None:
        session_mark_verified(request=request, device=device)
    return reason


@transaction.atomic
def backup_codes_regenerate(*, user: User) -> list[str]:
    """New backup codes for a user with an authenticator; the old ones stop working."""
    codes = _backup_codes_replace(user=user)
    audit_record(actor=user, action="2fa_backup_codes_regenerated", target=user)
    return codes


@transaction.atomic
def two_factor_reset(*, user: User, actor: User | None) -> int:
    """Remove every second factor of `user` (a lost phone). At the next log-in they set up
    a new one. Returns the number of devices removed."""
    removed = 0
    for model in (TOTPDevice, StaticDevice):
        removed += model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
    audit_record(
        actor=actor,
        action="2fa_reset",
        target=user,
        changes={"devices_removed": ["", str(removed)]},
    )
    return removed


class RestoreOperator(NamedTuple):
    user: User | None  # None: the database has no accounts to check against
    note: str  # for the operator's terminal; empty when nothing is worth saying
    break_glass: bool  # let through without a second factor: the caller audits and alerts


def restore_operator_check(
    *, username: str, token: str, break_glass: bool = False
) -> RestoreOperator:
    """The operator of a restore: an active district administrator with a confirmed
    authenticator (or backup codes), who gives a current code. Raises OperatorRefused.

    An operator without any second factor is refused unless `break_glass` is set (the
    caller audits and alerts it); break-glass never waives the code of an operator who has a
    device. When the database has no accounts at all (a restore into an
    empty server after a disaster) there is nobody to check: (None, note) and the restore
    goes on.
    """
    from django.db import DatabaseError, OperationalError

    try:
        if not User.objects.exists():
            return RestoreOperator(
                None, "The database has no accounts yet: the operator was not checked.", False
            )
        user = User.objects.filter(username=username, is_active=True).first()
    except OperationalError:  # the server does not answer
        return RestoreOperator(
            None, "The live database cannot be reached: the operator was not checked.", False
        )
    except DatabaseError:  # no auth tables: an empty database
        return RestoreOperator(
            None, "The database has no account tables: the operator was not checked.", False
        )
    from students.tenancy import is_district_admin

    if user is None or not is_district_admin(user):
        raise OperatorRefused(f"{username!r} is not an active district administrator.")
    has_device = (
        TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        or StaticDevice.objects.filter(user=user, confirmed=True).exists()
    )
    if not has_device:
        if not break_glass:
            raise OperatorRefused(
                f"{username} has no confirmed authenticator, so nobody can confirm it is them. "
                "Log in to the web site once to set one up, or, in an emergency, pass "
                '--break-glass "reason" (audited, and the administrators are alerted).'
            )
        return RestoreOperator(
            user,
            f"Break-glass: {username} has no two-factor device; the restore goes on "
            "unconfirmed and the administrators are alerted.",
            True,
        )
    if not token:
        raise OperatorRefused(
            f"{username} uses two-factor: pass a current code with --otp-token or "
            "the RESTORE_OTP_TOKEN environment variable."
        )
    device, reason = otp_code_check(user=user, token=token)
    if device is None:
        raise OperatorRefused(f"Two-factor code refused: {reason}")
    return RestoreOperator(user, "", False)
