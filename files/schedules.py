"""Periodic jobs of the documents app, written into django-celery-beat by setup_periodic_tasks."""

from __future__ import annotations

from school_site.periodic import PeriodicJob, cron, every

PERIODIC_JOBS = [
    # Nightly, off school hours: purging is not urgent (the retention period is measured in
    # days) and deleting many objects is I/O the day's uploads should not compete with.
    PeriodicJob(
        name="Purge expired documents from the trash",
        task="files.tasks.purge_deleted_documents",
        schedule=cron(minute="20", hour="2"),
        description="Deletes documents in the trash longer than DOCUMENTS_RETENTION_DAYS.",
    ),
    # Hourly: a killed worker's temporary upload can be 1 GB of disk; an hour bounds how long
    # it sits there, and files are only removed once DOCUMENTS_TEMP_MAX_AGE_HOURS old.
    PeriodicJob(
        name="Remove abandoned temporary uploads",
        task="files.tasks.remove_abandoned_uploads",
        schedule=every(hours=1),
    ),
    # Every 10 minutes: each upload queues its own copy at once; this sweep only retries what
    # failed (cloud outage), so the window in which only the local disk holds a file stays
    # short without hammering an endpoint that is down.
    PeriodicJob(
        name="Replicate pending hybrid copies",
        task="files.tasks.replicate_pending",
        schedule=every(minutes=10),
    ),
    # Weekly, Sunday night: listing every object costs API calls and time; orphans are a
    # slow leak to look into, not an emergency.
    PeriodicJob(
        name="Report orphaned storage objects",
        task="files.tasks.report_orphaned_objects",
        schedule=cron(minute="40", hour="3", day_of_week="0"),
    ),
]
