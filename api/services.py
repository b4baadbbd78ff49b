"""Writes and the one lookup of API tokens: issue, revoke, authenticate."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, as_user, audit_record
from students.models import School, StaffMember
from students.row_security import acting_for
from students.tenancy import is_district_admin

from .models import ApiToken

# Recognisable by secret scanners (GitHub's, gitleaks) and by people reading a config file.
TOKEN_PREFIX = "shk_"  # noqa: S105  (a label, not a secret)
# Stamping `last_used_at` on every call would turn each read into a write; once a minute
# tells an administrator all they need ("is this integration still running?").
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_holder_allowed(*, user: User, school: School) -> bool:
    """A token is issued only to someone with an active role at the school."""
    works_there = StaffMember.objects.filter(
        user=user, school=school, is_active=True, school__is_active=True
    ).exists()
    return works_there or is_district_admin(user)


@transaction.atomic
def api_token_create(
    *,
    user: User,
    school: School,
    name: str,
    scope: str = ApiToken.Scope.READ,
    expires_at: datetime.datetime | None = None,
    actor: Actor,
) -> tuple[ApiToken, str]:
    """Issue a token for `user` at `school`. Returns the row and the token itself, which is
    shown once and never stored."""
    if not token_holder_allowed(user=user, school=school):
        raise ValidationError({"user": f"{user.get_username()} has no role at {school}."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry date is in the past."})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits from the OS's CSPRNG
    token = ApiToken(
        user=user,
        school=school,
        name=name.strip(),
        scope=scope,
        prefix=raw[:12],
        key_hash=token_hash(raw),
        expires_at=expires_at,
        created_by=as_user(actor),
    )
    token.full_clean()
    token.save()
    audit_record(
        actor=actor,
        action="api_token_create",
        target=token,
        changes={"user": user.get_username(), "scope": scope, "prefix": token.prefix},
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor) -> ApiToken:
    """Stop a token from working, at once; the row stays as a record of who had it."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.revoked_by = as_user(actor)
    token.save(update_fields=["revoked_at", "revoked_by"])
    audit_record(
        actor=actor,
        action="api_token_revoke",
        target=token,
        changes={"user": token.user.get_username(), "prefix": token.prefix},
    )
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The usable token for this secret, with its user, or None. One indexed query, plus
    an update at most once a minute per token."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    digest = token_hash(raw)
    # Row-level security admits the token of the hash presented before its school is known.
    with acting_for(token_hash=digest):
        token = ApiToken.objects.usable().select_related("user").filter(key_hash=digest).first()
    # The lookup is by the hash of a 256-bit secret, so its timing reveals nothing useful;
    # the constant-time compare guards against a future change of the lookup.
    if token is None or not hmac.compare_digest(token.key_hash, digest):
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        with acting_for([token.school_id], token_hash=digest):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
