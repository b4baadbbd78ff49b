"""Retention: delete the backups each destination's policy no longer keeps, and the copies of
document content the documents app has purged.

Database dumps and media manifests are pruned by the same policy, each kind on its own (a
day's newest dump and a day's newest manifest are both kept). Media *objects* are not pruned
by age: an object every live document still needs is in the newest manifest, which is always
kept. They go when their content leaves the documents app (see `media_objects_erase`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record

from ..destinations import Destination, destination_get
from ..locking import backup_lock
from ..models import BackupRun, BackupRunQuerySet, MediaObject, RetentionPolicy
from ..retention import Policy, runs_to_keep
from .database import SIDECAR_SUFFIX
from .media import OBJECTS, media_record, media_storage

logger = logging.getLogger(__name__)


@dataclass
class PruneReport:
    deleted: dict[str, list[int]] = field(default_factory=dict)  # destination -> run ids
    kept: dict[str, list[int]] = field(default_factory=dict)
    erased: dict[str, list[str]] = field(default_factory=dict)  # destination -> object names
    errors: list[str] = field(default_factory=list)


def policy_for(destination: str) -> Policy:
    row = RetentionPolicy.objects.filter(destination=destination).first()
    if row is None:
        return Policy()
    return Policy(daily=row.keep_daily, weekly=row.keep_weekly, monthly=row.keep_monthly)


def backups_prune(*, dry_run: bool = False, actor: Actor = None) -> PruneReport:
    """Apply each destination's retention policy to its confirmed database backups and media
    manifests, then erase the copies of document content that has been purged.

    The newest backup and the newest verified backup of each kind are always kept, whatever
    the policy says, so pruning can never leave a destination without a restorable copy.
    Holds the backup lock: a media increment must not record an object while its copies are
    being erased. Raises BackupBusy when a backup runs."""
    report = PruneReport()
    with backup_lock(wait_seconds=60):
        for name in settings.BACKUP_DESTINATIONS:
            for runs in (BackupRun.objects.database(), BackupRun.objects.media()):
                _prune_runs(
                    name=name, runs=runs.restorable(), report=report, dry_run=dry_run, actor=actor
                )
        media_objects_erase(report=report, dry_run=dry_run, actor=actor)
        if settings.PITR_ENABLED:
            _prune_physical(report=report, dry_run=dry_run, actor=actor)
    return report


def _chain(run: BackupRun, by_label: dict[str, BackupRun]) -> list[BackupRun]:
    """The run and the sets it builds on (a differential's full; an incremental's parents)."""
    chain = [run]
    while (prior := by_label.get(chain[-1].prior_label)) is not None and prior not in chain:
        chain.append(prior)
    return chain


def _prune_physical(*, report: PruneReport, dry_run: bool, actor: Actor) -> None:
    """The same policy for the physical sets of each repository (its name: local, s3, gcs):
    a kept differential or incremental keeps the sets it builds on, and the newest set is
    always kept. Sets go with `pgbackrest expire --set`, then a plain `expire` drops the WAL
    that no kept set needs any more (every moment after the oldest kept set stays
    reachable)."""
    from .. import pgbackrest

    tz = timezone.get_current_timezone()
    for repo in pgbackrest.repos():
        name = f"physical:{repo.kind}"
        held = [
            r
            for r in BackupRun.objects.physical().restorable().filter(pruned_at__isnull=True)
            if any(e.get("repo") == repo.name and not e.get("pruned_at") for e in r.destinations)
        ]
        if not held:
            continue
        by_label = {r.label: r for r in held}
        keep_ids = runs_to_keep([(r.pk, r.started_at) for r in held], policy_for(repo.kind), tz=tz)
        keep_ids.add(max(held, key=lambda r: (r.started_at, r.pk)).pk)
        for run in [r for r in held if r.pk in keep_ids]:
            keep_ids.update(r.pk for r in _chain(run, by_label))
        report.kept[name] = sorted(keep_ids)
        doomed = sorted(
            (r for r in held if r.pk not in keep_ids), key=lambda r: r.started_at, reverse=True
        )
        report.deleted[name] = [r.pk for r in doomed]
        if dry_run or not doomed:
            continue
        for run in doomed:  # the newest first: a set's dependents before the set
            label = next(e.get("label") for e in run.destinations if e.get("repo") == repo.name)
            try:
                pgbackrest.run("expire", f"--repo={repo.index}", f"--set={label}", timeout=3600)
            except pgbackrest.PgBackRestError as exc:
                if "does not exist" not in str(exc):  # gone with the set it built on
                    report.errors.append(f"{name}: run {run.pk} ({label}): {exc}")
                    continue
            with transaction.atomic():
                run.refresh_from_db()
                now = timezone.now()
                for entry in run.destinations:
                    if entry.get("repo") == repo.name:
                        entry["pruned_at"] = now.isoformat()
                if all(e.get("pruned_at") for e in run.destinations):
                    run.pruned_at = now
                run.save(update_fields=["destinations", "pruned_at"])
                audit_record(
                    actor=actor, action="backup_prune", target=run, changes={"destination": name}
                )
        try:
            pgbackrest.run("expire", f"--repo={repo.index}", timeout=3600)
        except pgbackrest.PgBackRestError as exc:
            report.errors.append(f"{name}: WAL expiry: {exc}")


def _prune_runs(
    *, name: str, runs: BackupRunQuerySet, report: PruneReport, dry_run: bool, actor: Actor
) -> None:
    tz = timezone.get_current_timezone()
    held = [
        r
        for r in runs.filter(pruned_at__isnull=True)
        if any(
            e.get("name") == name and e.get("confirmed") and not e.get("pruned_at")
            for e in r.destinations
        )
    ]
    if not held:
        return
    keep = runs_to_keep([(r.pk, r.started_at) for r in held], policy_for(name), tz=tz)
    keep.add(max(held, key=lambda r: (r.started_at, r.pk)).pk)
    verified = [r for r in held if r.status == BackupRun.Status.VERIFIED]
    if verified:
        keep.add(max(verified, key=lambda r: (r.started_at, r.pk)).pk)
    report.kept[name] = sorted({*report.kept.get(name, []), *keep})
    doomed = [r for r in held if r.pk not in keep]
    report.deleted[name] = sorted({*report.deleted.get(name, []), *(r.pk for r in doomed)})
    if dry_run:
        return
    destination = destination_get(name)
    for run in doomed:
        try:
            destination.delete(run.object_key)
            if run.kind == BackupRun.Kind.DATABASE:
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


def media_objects_erase(*, report: PruneReport, dry_run: bool = False, actor: Actor = None) -> None:
    """Delete, at every destination, the copy of each document object the documents app no
    longer has, and bring the backups' record (`MediaObject`) in line with what each
    destination really holds.

    Purged or erased content is deleted from the backups at the next prune (nightly), not
    kept until the last manifest that lists it expires: a family's erasure request, or the
    end of the trash period, must not live on for a year of monthly manifests, and the trash
    (DOCUMENTS_RETENTION_DAYS) is the window in which a deletion can be undone, not the
    backups. Deleting beats crypto-shredding here: every object is encrypted with the one
    backup keyset (there is no per-document key to destroy), and that keyset is copied into
    secret stores on purpose.

    An object counts as purged only when both the documents app's row and the content in the
    document store are gone, as `files.services.document_purge` leaves it. Content that lost
    its row but is still in the store (a database restored to an earlier point) and a row
    whose content vanished from the store (the accident backups exist for) are both kept.

    One listing per destination a night (one request per 1,000 objects) also catches copies
    lost behind our back: the record forgets them, and the next increment copies them again.
    """
    from files.models import StoredObject

    live = set(StoredObject.objects.values_list("key", flat=True))
    record = media_record()
    storage = media_storage()
    in_store: dict[str, bool] = {}  # one HEAD per candidate, shared by the destinations
    lost: dict[str, set[str]] = {}  # object name -> destinations whose copy is gone
    for name in settings.BACKUP_DESTINATIONS:
        destination = destination_get(name)
        try:
            held = {key[len(OBJECTS) :] for key, _size in destination.list(OBJECTS)}
        except Exception as exc:
            report.errors.append(f"{name}: listing media objects: {exc}")
            continue
        for object_name, row in record.items():
            if name in row.destinations and object_name not in held:
                logger.warning("%s: the copy of %s is missing", name, object_name)
                lost.setdefault(object_name, set()).add(name)
        for object_name in sorted(held - live):
            if object_name not in in_store:
                in_store[object_name] = storage.exists(object_name)
            if in_store[object_name]:
                continue
            report.erased.setdefault(name, []).append(object_name)
            if not dry_run and _erase_copy(destination, object_name, report):
                lost.setdefault(object_name, set()).add(name)
    if dry_run or not lost:
        return
    now = timezone.now()
    with transaction.atomic():
        for object_name, gone in sorted(lost.items()):
            known = record.get(object_name)
            held_now = [d for d in (known.destinations if known else []) if d not in gone]
            # Copies lost behind our back are only forgotten (the next increment copies them
            # again); content that left the documents app is marked erased once no copy is
            # left, so a restore of an older manifest knows it is gone on purpose.
            erased = not held_now and object_name not in live and not in_store.get(object_name)
            MediaObject.objects.update_or_create(
                name=object_name,
                defaults={"destinations": held_now, **({"erased_at": now} if erased else {})},
                create_defaults={"size": 0, "destinations": held_now, "erased_at": now},
            )
        erased_names = sorted({n for names in report.erased.values() for n in names})
        if erased_names:
            audit_record(
                actor=actor,
                action="backup_media_erase",
                changes={"objects": len(erased_names), "destinations": sorted(report.erased)},
            )


def _erase_copy(destination: Destination, object_name: str, report: PruneReport) -> bool:
    try:
        destination.delete(OBJECTS + object_name)
    except Exception as exc:
        report.errors.append(f"{destination.name}: erasing {object_name}: {exc}")
        return False
    return True
