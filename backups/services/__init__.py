"""Backup writes. Each public service is keyword-only and safe to call from a task, a command
or a view; the modules below hold one workflow each."""

from __future__ import annotations

from .break_glass import BreakGlassRefused, restore_break_glass_record
from .database import backup_database_run
from .links import LinkRefused, backup_download_link_create, backup_download_open
from .media import backup_media_run, media_restore
from .prune import PruneReport, backups_prune
from .reaper import backup_runs_reap
from .restore import RestoreOutcome, RestoreRefused, backup_restore, check_migrations_forward
from .runs import backup_run_fail, backup_run_start
from .verify import VerificationFailed, backup_verify, latest_database_run

__all__ = [
    "BreakGlassRefused",
    "LinkRefused",
    "PruneReport",
    "RestoreOutcome",
    "RestoreRefused",
    "VerificationFailed",
    "backup_database_run",
    "backup_download_link_create",
    "backup_download_open",
    "backup_media_run",
    "backup_restore",
    "backup_run_fail",
    "backup_run_start",
    "backup_runs_reap",
    "backup_verify",
    "backups_prune",
    "check_migrations_forward",
    "latest_database_run",
    "media_restore",
    "restore_break_glass_record",
]
