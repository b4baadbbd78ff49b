"""Retention: delete the database backups each destination's policy no longer keeps."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record

from ..destinations import destination_get
from ..models import BackupRun, RetentionPolicy
from ..retention import Policy, runs_to_keep
from .database import SIDECAR_SUFFIX

logger = logging.getLogger(__name__)


@dataclass
class PruneReport:
    deleted: dict[str, list[int]] = field(default_factory=dict)  # destination -> run ids
    kept: dict[str, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def policy_for(destination: str) -> Policy:
    row = RetentionPolicy.objects.filter(destination=destination).first()
    if row is None:
        return Policy()
    return Policy(daily=row.keep_daily, weekly=row.keep_weekly, monthly=row.keep_monthly)


def backups_prune(*, dry_run: bool = False, actor: Actor = None) -> PruneReport:
    """Apply each destination's retention policy to its confirmed database backups.

    The newest backup and the newest verified backup are always kept, whatever the policy
    says, so pruning can never leave a destination without a restorable copy.
    """
    report = PruneReport()
    tz = timezone.get_current_timezone()
    runs = list(BackupRun.objects.database().restorable().filter(pruned_at__isnull=True))
    for name in settings.BACKUP_DESTINATIONS:
        held = [
            r
            for r in runs
            if any(
                e.get("name") == name and e.get("confirmed") and not e.get("pruned_at")
                for e in r.destinations
            )
        ]
        if not held:
            continue
        keep = runs_to_keep([(r.pk, r.started_at) for r in held], policy_for(name), tz=tz)
        keep.add(max(held, key=lambda r: (r.started_at, r.pk)).pk)
        verified = [r for r in held if r.status == BackupRun.Status.VERIFIED]
        if verified:
            keep.add(max(verified, key=lambda r: (r.started_at, r.pk)).pk)
        report.kept[name] = sorted(keep)
        doomed = [r for r in held if r.pk not in keep]
        report.deleted[name] = sorted(r.pk for r in doomed)
        if dry_run:
            continue
        destination = destination_get(name)
        for run in doomed:
            try:
                destination.delete(run.object_key)
                destination.delete(run.object_key + SIDECAR_SUFFIX)
            except Exception as exc:
                report.errors.append(f"{name}: run {run.pk}: {exc}")
                continue
            with transaction.atomic():
                run.refresh_from_db()
                now = timezone.now()
                for entry in run.destinations:
                    if entry.get("name") == name:
                        entry["pruned_at"] = now.isoformat()
                if all(e.get("pruned_at") for e in run.destinations):
                    run.pruned_at = now
                run.save(update_fields=["destinations", "pruned_at"])
                audit_record(
                    actor=actor, action="backup_prune", target=run, changes={"destination": name}
                )
    return report
