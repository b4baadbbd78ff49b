"""Backup runs and the retention policy.

A backup is not school-owned: it holds every school's data, so only superusers and district
administrators see these rows (see `backups.permissions`).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q


class BackupRunQuerySet(models.QuerySet):
    def database(self) -> BackupRunQuerySet:
        return self.filter(kind=BackupRun.Kind.DATABASE)

    def media(self) -> BackupRunQuerySet:
        return self.filter(kind=BackupRun.Kind.MEDIA)

    def physical(self) -> BackupRunQuerySet:
        return self.filter(kind=BackupRun.Kind.PHYSICAL)

    def restorable(self) -> BackupRunQuerySet:
        """Runs whose objects were confirmed at every destination (verified or not)."""
        return self.filter(status__in=[BackupRun.Status.SUCCEEDED, BackupRun.Status.VERIFIED])

    def running(self) -> BackupRunQuerySet:
        return self.filter(status=BackupRun.Status.RUNNING)


class BackupRun(models.Model):
    """One attempt at a database dump or a media increment, and everything needed to trust
    and restore it later: where its objects are, which key encrypted them, and the schema
    and row counts it captured."""

    class Kind(models.TextChoices):
        DATABASE = "database", "Database"
        MEDIA = "media", "Media (documents)"
        PHYSICAL = "physical", "Physical (pgBackRest)"

    class BackupType(models.TextChoices):
        NONE = "", "-"
        FULL = "full", "Full"
        DIFF = "diff", "Differential"
        INCR = "incr", "Incremental"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        VERIFIED = "verified", "Verified"

    class Verification(models.TextChoices):
        NONE = "", "Not verified"
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Stamped every few seconds by the process doing the work; the reaper calls a run dead
    # when the stamp stops moving.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid doing the work")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    object_key = models.CharField(
        max_length=300, blank=True, help_text="Object name at every destination."
    )
    raw_size = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes of the dump before compression."
    )
    stored_size = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes of the compressed, encrypted object."
    )
    sha256 = models.CharField(max_length=64, blank=True, help_text="Of the stored object.")
    # [{"name": "s3", "key": "...", "size": 123, "sha256": "...", "confirmed": true}, ...]
    destinations = models.JSONField(default=list, blank=True)
    key_id = models.BigIntegerField(
        null=True, blank=True, help_text="Tink key id of the keyset's primary key used."
    )
    engine = models.CharField(max_length=20, blank=True)  # postgresql / sqlite
    server_version = models.CharField(max_length=100, blank=True)
    # {"app": ["0001_initial", ...]}: decides whether this code can migrate forward from it.
    migrations = models.JSONField(default=dict, blank=True)
    schema_hash = models.CharField(max_length=64, blank=True)
    # Exact per-table row counts taken inside the dump's own snapshot.
    row_counts = models.JSONField(default=dict, blank=True)
    # Media increments: how many objects the run copied, and how many were already there.
    objects_copied = models.PositiveIntegerField(null=True, blank=True)
    objects_present = models.PositiveIntegerField(null=True, blank=True)
    # Physical runs: pgBackRest's own record of the set (`pgbackrest info`).
    backup_type = models.CharField(
        max_length=4, choices=BackupType.choices, default=BackupType.NONE, blank=True
    )
    label = models.CharField(
        max_length=60, blank=True, help_text="The repository's backup label (20261201-021500F)."
    )
    prior_label = models.CharField(
        max_length=60, blank=True, help_text="The set a differential or incremental builds on."
    )
    wal_start = models.CharField(max_length=24, blank=True, help_text="First WAL segment.")
    wal_stop = models.CharField(max_length=24, blank=True, help_text="Last WAL segment.")
    lsn_start = models.CharField(max_length=20, blank=True)
    lsn_stop = models.CharField(max_length=20, blank=True)
    error = models.TextField(blank=True)
    verification = models.CharField(
        max_length=10, choices=Verification.choices, default=Verification.NONE, blank=True
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_report = models.JSONField(default=dict, blank=True)
    pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention deleted this run's objects."
    )

    objects = BackupRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["kind", "status", "-started_at"], name="backuprun_kind_status_idx")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="running") | Q(finished_at__isnull=False),
                name="backuprun_finished_unless_running",
            ),
        ]

    def __str__(self) -> str:
        when = f"{self.started_at:%Y-%m-%d %H:%M}" if self.started_at else "not started"
        return f"{self.get_kind_display()} backup #{self.pk} ({self.status}, {when})"

    @property
    def duration(self) -> datetime.timedelta | None:
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def is_restorable(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.VERIFIED} and not self.pruned_at

    def destination(self, name: str) -> dict[str, Any] | None:
        return next((d for d in self.destinations if d.get("name") == name), None)


class RetentionPolicy(models.Model):
    """How many database backups a destination keeps: the newest run of each of the last N
    days, N ISO weeks and N months (the grandfather-father-son scheme)."""

    destination = models.CharField(
        max_length=20,
        unique=True,
        help_text="local, s3 or gcs: the destination this policy prunes.",
    )
    keep_daily = models.PositiveSmallIntegerField(default=7, validators=[MaxValueValidator(3650)])
    keep_weekly = models.PositiveSmallIntegerField(default=4, validators=[MaxValueValidator(520)])
    keep_monthly = models.PositiveSmallIntegerField(
        default=12, validators=[MaxValueValidator(1200)]
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["destination"]

    def __str__(self) -> str:
        return (
            f"{self.destination}: {self.keep_daily} daily, {self.keep_weekly} weekly, "
            f"{self.keep_monthly} monthly"
        )

    def clean(self) -> None:
        if self.keep_daily + self.keep_weekly + self.keep_monthly == 0:
            raise ValidationError("A policy that keeps nothing would delete every backup.")
        if self.destination not in {"local", "s3", "gcs"}:
            raise ValidationError({"destination": "Choose local, s3 or gcs."})


class MediaObject(models.Model):
    """The backups' record of one document object: where its encrypted copy was confirmed,
    and its size and sha256. The hourly increment trusts it instead of asking every
    destination and the document store about every object every hour; the nightly prune
    checks it against a listing of each destination and erases the copies of content the
    documents app has purged."""

    # The name in the document store (`sha256/ab/cd/<sha256>`); the copy is at
    # `media/objects/<name>` at each destination.
    name = models.CharField(max_length=300, unique=True)
    size = models.PositiveBigIntegerField(help_text="Bytes in the document store.")
    sha256 = models.CharField(
        max_length=64, blank=True, help_text="Of those bytes; empty if adopted unread."
    )
    # ["local", "s3", ...]: destinations where the copy was written and read back.
    destinations = models.JSONField(default=list, blank=True)
    copied_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the prune deleted every copy because the document store no longer "
        "holds the content (purged or erased on request).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RestorePoint(models.Model):
    """A named moment in the WAL (`pg_create_restore_point`) that a restore can go back to:
    made before risky operations (a year rollover, a CSV import, a restore) and on request."""

    class Reason(models.TextChoices):
        MANUAL = "manual", "Manual"
        ROLLOVER = "rollover", "Year rollover"
        IMPORT = "import", "CSV import"
        RESTORE = "restore", "Restore"
        DRILL = "drill", "Drill mark"

    name = models.CharField(max_length=63, unique=True)
    reason = models.CharField(max_length=10, choices=Reason.choices, default=Reason.MANUAL)
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    lsn = models.CharField(max_length=20)
    wal_file = models.CharField(max_length=24, blank=True)
    school_id = models.BigIntegerField(
        null=True, blank=True, help_text="The school the operation was for, if one."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    # Row-level security (students.row_security): a point made for one school's operation is
    # that school's to see; the district's (no school) are anyone's who may see backups.
    row_security_columns = ("school_id",)
    row_security_also = "school_id IS NULL"

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.created_at:%Y-%m-%d %H:%M:%S})"


class DrillMarkQuerySet(models.QuerySet):
    def ready(self) -> DrillMarkQuerySet:
        """Marks whose restore point was written and whose fingerprint was taken."""
        return self.filter(created_at__isnull=False).exclude(fingerprint={})


class DrillMark(models.Model):
    """A fingerprinted restore point for the restore drill: every school's records as they
    stood at one named place in the WAL (per table, a row count and an md5 of the rows in
    primary-key order), taken in the very snapshot that place ends (`services.drill`)."""

    name = models.CharField(max_length=63, unique=True)
    # When the restore point was written: empty while the mark is being made.
    created_at = models.DateTimeField(null=True, blank=True)
    lsn = models.CharField(max_length=20, blank=True)
    wal_file = models.CharField(max_length=24, blank=True)
    # How long writes to the school-owned tables waited on the mark's locks.
    lock_seconds = models.FloatField(null=True, blank=True)
    fingerprint_seconds = models.FloatField(null=True, blank=True)
    # {"tables": {table: {"pk": column, "school": column}},
    #  "schools": {school id or "": {table: [rows, md5]}}, "names": {school id: name}}
    fingerprint = models.JSONField(default=dict, blank=True)

    objects = DrillMarkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class DrillReceipt(models.Model):
    """What one restore drill proved for one school (or, with no school, for the district:
    the drill as a whole): the moment restored to, how far the recovered state lay from it,
    how long the restore took, and whether every table of the school matched."""

    class Result(models.TextChoices):
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"

    # One drill's receipts share it ("drill-20261206T053000Z").
    drill = models.CharField(max_length=40, db_index=True)
    # No foreign key: a receipt outlives the school, and backups are not school-owned rows.
    school_id = models.BigIntegerField(
        null=True, blank=True, help_text="Empty: the district-wide receipt of the drill."
    )
    school_name = models.CharField(max_length=200, blank=True)
    restore_point = models.CharField(max_length=63, help_text="The drill mark restored to.")
    target_time = models.DateTimeField(null=True, blank=True)
    recovered_to = models.DateTimeField(
        null=True, blank=True, help_text="The last transaction the restored cluster replayed."
    )
    data_loss_seconds = models.FloatField(
        null=True, blank=True, help_text="From the last transaction recovered to the target."
    )
    archive_lag_seconds = models.FloatField(
        null=True, blank=True, help_text="Age of the newest archived WAL when the drill ran."
    )
    restore_seconds = models.FloatField(
        null=True, blank=True, help_text="Restore, WAL replay and checks."
    )
    result = models.CharField(max_length=10, choices=Result.choices)
    tables = models.PositiveIntegerField(default=0, help_text="Tables compared.")
    rows = models.PositiveBigIntegerField(default=0, help_text="Rows compared.")
    # {"differ": {table: {"expected": [rows, md5], "found": [rows, md5]}}, "error": "..."}
    details = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    # Row-level security (students.row_security): a school's receipt to those acting for
    # it; the district-wide one (no school), which carries the drill's result, to anyone who
    # may see backups (the health check reads it).
    row_security_columns = ("school_id",)
    row_security_also = "school_id IS NULL"

    class Meta:
        ordering = ["-finished_at", "school_id", "id"]
        indexes = [models.Index(fields=["-finished_at"], name="drillreceipt_finished_idx")]

    def __str__(self) -> str:
        who = self.school_name or (f"school {self.school_id}" if self.school_id else "district")
        return f"{self.drill} {who}: {self.result}"

    @property
    def passed(self) -> bool:
        return self.result == self.Result.PASSED

    @property
    def failure(self) -> str:
        """Why this receipt failed, in one line ("" when it passed)."""
        if self.passed:
            return ""
        details = self.details
        if details.get("error"):
            return str(details["error"]).splitlines()[0]
        if details.get("failed_schools"):
            return "restored records differ for " + ", ".join(details["failed_schools"])
        if details.get("differ"):
            return "restored records differ in " + ", ".join(sorted(details["differ"]))
        damaged = [
            f"{name}: {wrong[0]}"
            for name, wrong in details.get("repositories", {}).items()
            if isinstance(wrong, list) and wrong
        ]
        if damaged:
            return "repository verify: " + "; ".join(damaged)
        return "failed"

    @property
    def figures(self) -> str:
        """The drill's measures in one line, for the command, the admin and the dashboard."""

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:g} s"

        target = f"{self.target_time:%Y-%m-%d %H:%M:%S %Z}" if self.target_time else "-"
        return (
            f"target {self.restore_point or '-'} ({target}), restore "
            f"{seconds(self.restore_seconds)}, data-loss window "
            f"{seconds(self.data_loss_seconds)}, archive lag {seconds(self.archive_lag_seconds)}"
        )
