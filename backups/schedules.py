"""Periodic jobs of the backups app, written into django-celery-beat by setup_periodic_tasks
(administrators may change their timing in the admin afterwards)."""

from __future__ import annotations

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
