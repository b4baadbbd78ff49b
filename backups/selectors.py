"""Backup reads. The monitoring app's `backup_freshness` check imports the first two lazily."""

from __future__ import annotations

import dataclasses
import datetime

from django.db.models import QuerySet

from .models import BackupRun, DrillReceipt


def last_verified_backup_at() -> datetime.datetime | None:
    """When the newest database backup that passed a restore drill was taken (its start,
    the moment its data describes), or None when none ever passed."""
    run = (
        BackupRun.objects.database()
        .filter(verification=BackupRun.Verification.PASSED)
        .order_by("-started_at")
        .only("started_at")
        .first()
    )
    return run.started_at if run else None


def last_backup_failed() -> bool:
    """True when the latest finished run of either kind failed, or the latest verification
    of a database backup failed: someone must look."""
    for kind in (BackupRun.Kind.DATABASE, BackupRun.Kind.MEDIA, BackupRun.Kind.PHYSICAL):
        latest = (
            BackupRun.objects.filter(kind=kind)
            .exclude(status=BackupRun.Status.RUNNING)
            .order_by("-started_at", "-pk")
            .only("status")
            .first()
        )
        if latest is not None and latest.status == BackupRun.Status.FAILED:
            return True
    checked = (
        BackupRun.objects.database()
        .filter(verified_at__isnull=False)
        .exclude(verification=BackupRun.Verification.RUNNING)
        .order_by("-verified_at")
        .only("verification")
        .first()
    )
    return checked is not None and checked.verification == BackupRun.Verification.FAILED


@dataclasses.dataclass
class PitrHealth:
    errors: list[str]
    warnings: list[str]
    detail: str


PITR_CHECK_CACHE_KEY = "backups:pitr-check"


def pitr_health() -> PitrHealth:
    """Continuous archiving, watched (monitoring's `pitr` check and its alert): PostgreSQL's
    archiver (`pg_stat_archiver`, and the segments still waiting in archive_status), the
    newest physical backup's age, and the last `pgbackrest check` of the repositories (run
    by beat every 15 minutes, `backups.tasks.pitr_check`)."""
    from django.conf import settings
    from django.core.cache import cache
    from django.utils import timezone

    from .services.physical import archive_status, maintenance_connection, newest_physical_run

    errors: list[str] = []
    warnings: list[str] = []
    status = archive_status()
    waiting: int | None = None
    try:
        with maintenance_connection() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
            )
            waiting = int(cursor.fetchone()[0])
    except Exception:  # pg_ls_archive_statusdir needs pg_monitor: go without the figure
        waiting = None
    archived, failed = status.last_archived_age, status.last_failed_age
    if status.archive_mode != "on":
        errors.append(f"archive_mode is {status.archive_mode}: no WAL is archived")
    elif failed is not None and (archived is None or failed < archived):
        errors.append(
            f"archiving fails: WAL {status.last_failed_wal} failed {failed:.0f} s ago "
            f"({status.failed_count} failed attempts since the statistics were reset)"
        )
    if waiting and archived is not None and archived > settings.PITR_MAX_ARCHIVE_AGE_SECONDS:
        errors.append(
            f"{waiting} WAL segment(s) wait to be archived; the last was archived "
            f"{archived:.0f} s ago"
        )
    newest = newest_physical_run()
    backup_text = "no physical backup yet"
    if newest is None or newest.finished_at is None:
        warnings.append(backup_text)
    else:
        hours = (timezone.now() - newest.finished_at).total_seconds() / 3600
        backup_text = f"newest physical backup {hours:.1f} h ago ({newest.backup_type})"
        if hours > settings.PITR_MAX_BACKUP_AGE_HOURS:
            errors.append(
                f"the newest physical backup is {hours:.1f} h old "
                f"(more than {settings.PITR_MAX_BACKUP_AGE_HOURS:g} h)"
            )
    check = cache.get(PITR_CHECK_CACHE_KEY)
    if check and not check.get("ok"):
        errors.append(f"pgbackrest check failed at {check.get('at')}: {check.get('error')}")
    archived_text = "never" if archived is None else f"{archived:.0f} s ago"
    detail = (
        f"last WAL archived {archived_text}"
        + ("" if waiting is None else f", {waiting} waiting")
        + f"; {backup_text}"
    )
    return PitrHealth(errors=errors, warnings=warnings, detail=detail)


def pitr_drill_health() -> PitrHealth:
    """The newest restore drill (monitoring's `pitr_drill` check): failed when it failed or
    is older than PITR_DRILL_MAX_AGE_DAYS; a warning before the first one."""
    from django.conf import settings
    from django.utils import timezone

    newest = (
        DrillReceipt.objects.filter(school_id__isnull=True).order_by("-finished_at", "-pk").first()
    )
    if newest is None:
        return PitrHealth(
            errors=[],
            warnings=["no restore drill yet (weekly; `manage.py pitr drill` runs one now)"],
            detail="",
        )
    days = (timezone.now() - newest.finished_at).total_seconds() / 86400
    schools = newest.details.get("schools", 0)
    detail = f"drill {newest.drill} {newest.result} {days:.1f} d ago"
    errors: list[str] = []
    if newest.passed:
        detail += f": {schools} school(s) equal to the mark; {newest.figures}"
    else:
        errors.append(f"{detail}: {newest.failure}")
    if days > settings.PITR_DRILL_MAX_AGE_DAYS:
        errors.append(
            f"the newest restore drill is {days:.1f} days old "
            f"(more than {settings.PITR_DRILL_MAX_AGE_DAYS:g})"
        )
    return PitrHealth(errors=errors, warnings=[], detail=detail)


def drill_receipts_newest() -> list[DrillReceipt]:
    """The receipts of the newest drill: the district's first, then each school's."""
    newest = DrillReceipt.objects.order_by("-finished_at", "-pk").values_list("drill").first()
    if newest is None:
        return []
    return list(DrillReceipt.objects.filter(drill=newest[0]).order_by("school_name", "school_id"))


def backup_runs_list(*, kind: str | None = None, limit: int = 50) -> QuerySet[BackupRun]:
    qs = BackupRun.objects.all()
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-started_at", "-pk")[:limit]


def backup_run_resolve(ref: str, *, kind: str = BackupRun.Kind.DATABASE) -> BackupRun | None:
    """A run by id, or `latest`: the newest restorable run of `kind` whose verification did
    not fail."""
    if ref == "latest":
        return (
            BackupRun.objects.filter(kind=kind)
            .restorable()
            .filter(pruned_at__isnull=True)
            .exclude(verification=BackupRun.Verification.FAILED)
            .order_by("-started_at", "-pk")
            .first()
        )
    if not ref.isdigit():
        return None
    return BackupRun.objects.filter(pk=int(ref)).first()


def backup_run_from_destination(ref: str, *, destination_name: str) -> BackupRun | None:
    """A database backup described by the sidecar files at a destination, for restoring when
    the database that held the BackupRun rows is itself lost. `ref` is a run id or `latest`.
    The returned run is not saved."""
    import json

    from .destinations import destination_get
    from .services.database import SIDECAR_SUFFIX

    destination = destination_get(destination_name)
    sidecars = [key for key, _size in destination.list("database/") if key.endswith(SIDECAR_SUFFIX)]
    found: list[dict] = []
    for key in sidecars:
        with destination.open_reader(key) as reader:
            meta = json.loads(reader.read())
        if ref == "latest" or str(meta.get("run_id")) == ref:
            found.append(meta)
    if not found:
        return None
    meta = max(found, key=lambda m: m["started_at"])
    run = BackupRun(
        id=meta["run_id"],
        kind=BackupRun.Kind.DATABASE,
        status=BackupRun.Status.SUCCEEDED,
        started_at=datetime.datetime.fromisoformat(meta["started_at"]),
        object_key=meta["object_key"],
        key_id=meta["key_id"],
        raw_size=meta["raw_size"],
        stored_size=meta["stored_size"],
        sha256=meta["sha256"],
        engine=meta["engine"],
        server_version=meta["server_version"],
        migrations=meta["migrations"],
        schema_hash=meta["schema_hash"],
        row_counts=meta["row_counts"],
        destinations=[{"name": destination_name, "key": meta["object_key"], "confirmed": True}],
    )
    return run
