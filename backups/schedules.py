"""Periodic jobs of the backups app, written into django-celery-beat by setup_periodic_tasks
(administrators may change their timing in the admin afterwards)."""

from __future__ import annotations

from django.conf import settings

from school_site.periodic import PeriodicJob, cron, every

PERIODIC_JOBS = [
    # Nightly, when nobody takes attendance: a day is the most work a school may lose.
    PeriodicJob(
        name="Backups: database",
        task="backups.tasks.backup_database",
        schedule=cron(minute="15", hour="2"),
        kwargs={"trigger": "schedule"},
        description="Encrypted database dump to every backup destination.",
    ),
    # Hourly: uploads are irreplaceable (scans, signed forms) and each increment is cheap,
    # copying only objects the destination lacks. Minute 40 stays clear of the 02:15 dump.
    PeriodicJob(
        name="Backups: media increment",
        task="backups.tasks.backup_media",
        schedule=cron(minute="40"),
        kwargs={"trigger": "schedule"},
        description="Copy new document objects and write a manifest.",
    ),
    # Daily, after the nightly dump: retention never has to catch up on more than a day.
    PeriodicJob(
        name="Backups: prune",
        task="backups.tasks.prune_backups",
        schedule=cron(minute="30", hour="4"),
        description="Delete backups the retention policies no longer keep.",
    ),
    # Weekly, on Sunday morning: a full restore drill is heavy, and a week bounds how long a
    # broken backup chain can go unnoticed (the health check watches its age).
    PeriodicJob(
        name="Backups: verify latest",
        task="backups.tasks.verify_backup",
        schedule=cron(minute="0", hour="5", day_of_week="0"),
        description="Download, decrypt, checksum and restore-drill the latest backup.",
    ),
    # Every 5 minutes: a dead worker's run is failed (and alerted) well within the
    # heartbeat timeout, instead of waiting for the next night.
    PeriodicJob(
        name="Backups: reap dead runs",
        task="backups.tasks.reap_backups",
        schedule=every(minutes=5),
        description="Fail runs whose worker died and remove their partial objects.",
    ),
]

# Point-in-time recovery (when PITR_PG_DATA is set): pgBackRest archives the WAL all day; a
# weekly full and a daily differential bound how much WAL a restore replays. Sunday 01:00 is
# before the 02:15 dump and the 05:00 drill; the differentials run the other six nights.
if settings.PITR_ENABLED:
    PERIODIC_JOBS += [
        PeriodicJob(
            name="Backups: physical full",
            task="backups.tasks.backup_physical",
            schedule=cron(minute="0", hour="1", day_of_week="0"),
            kwargs={"backup_type": "full", "trigger": "schedule"},
            description="pgBackRest full backup into every PITR repository.",
        ),
        PeriodicJob(
            name="Backups: physical differential",
            task="backups.tasks.backup_physical",
            schedule=cron(minute="0", hour="1", day_of_week="1-6"),
            kwargs={"backup_type": "diff", "trigger": "schedule"},
            description="pgBackRest differential backup (changes since the last full).",
        ),
        # Every 15 minutes: a broken archive (full disk, lost credentials, a bucket gone)
        # found within the quarter hour, not at the next restore.
        PeriodicJob(
            name="Backups: archiving check",
            task="backups.tasks.pitr_check",
            schedule=every(minutes=15),
            description="pgbackrest check: a WAL segment archived to every repository.",
        ),
        # A drill mark at a random minute of every few hours (the task picks the moment):
        # the drill's targets then fall in lessons, registers and imports, not only at night.
        PeriodicJob(
            name="Backups: drill mark",
            task="backups.tasks.pitr_drill_mark",
            schedule=cron(minute="0", hour=f"*/{settings.PITR_DRILL_MARK_HOURS}"),
            kwargs={"jitter_seconds": settings.PITR_DRILL_MARK_HOURS * 3600 - 60},
            description="Restore point with every school's records fingerprinted at it.",
        ),
        # Weekly, Sunday 05:30: after the 01:00 full backup and the 05:00 logical verify, so
        # the drills never compete; a week bounds how long a broken archive goes unproven.
        PeriodicJob(
            name="Backups: restore drill",
            task="backups.tasks.pitr_drill",
            schedule=cron(minute="30", hour="5", day_of_week="0"),
            description="Restore a random moment of the last day and prove it school by school.",
        ),
    ]
