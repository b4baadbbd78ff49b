"""Signed, short-lived, audited download links to a backup object, for administrators.

The link carries the run, the destination and the user it was made for, signed with the
site's SECRET_KEY; it works for that user only, for BACKUP_DOWNLOAD_LINK_MAX_AGE seconds.
What it serves is the encrypted object: the key stays with the operators.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse

from audit.services import audit_record

from ..destinations import destination_get
from ..models import BackupRun
from ..permissions import may_manage_backups

SALT = "backups.download"


class LinkRefused(Exception):
    pass


@transaction.atomic
def backup_download_link_create(*, run: BackupRun, actor: Any) -> str:
    """A relative URL that lets `actor` download the run's object for a few minutes."""
    if not may_manage_backups(actor):
        raise LinkRefused("Only superusers and district administrators may download backups.")
    if not run.is_restorable:
        raise LinkRefused(f"Backup #{run.pk} has no confirmed object to download.")
    entry = next(e for e in run.destinations if e.get("confirmed") and not e.get("pruned_at"))
    token = signing.dumps(
        {"run": run.pk, "destination": entry["name"], "user": actor.pk}, salt=SALT, compress=True
    )
    audit_record(
        actor=actor,
        action="backup_download_link",
        target=run,
        changes={"destination": entry["name"]},
    )
    return reverse("backups:download", kwargs={"token": token})


def backup_download_open(*, token: str, actor: Any) -> tuple[BackupRun, BinaryIO, str, int | None]:
    """Check the token and the user, audit the download, and open the object for reading."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.BACKUP_DOWNLOAD_LINK_MAX_AGE)
    except signing.SignatureExpired:
        raise LinkRefused("This download link has expired; make a new one.") from None
    except signing.BadSignature:
        raise LinkRefused("This download link is not valid.") from None
    if not may_manage_backups(actor) or data.get("user") != actor.pk:
        raise LinkRefused("This download link was made for another administrator.")
    run = BackupRun.objects.get(pk=data["run"])
    entry = run.destination(data["destination"])
    if entry is None or entry.get("pruned_at"):
        raise LinkRefused("This backup is no longer held at that destination.")
    destination = destination_get(data["destination"])
    key = entry.get("key") or run.object_key
    size = destination.size(key)
    audit_record(
        actor=actor, action="backup_download", target=run, changes={"destination": destination.name}
    )
    return run, destination.open_reader(key), key.rsplit("/", 1)[-1], size
