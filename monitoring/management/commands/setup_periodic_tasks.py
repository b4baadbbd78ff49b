"""Write every app's declared periodic jobs into django-celery-beat (idempotent)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from school_site.periodic import Crontab, Interval, PeriodicJob


def declared_jobs() -> list[PeriodicJob]:
    """Every PeriodicJob in the installed apps' `schedules.py` modules."""
    import importlib

    from django.apps import apps

    jobs: list[PeriodicJob] = []
    for config in apps.get_app_configs():
        try:
            module = importlib.import_module(f"{config.name}.schedules")
        except ModuleNotFoundError:
            continue
        jobs.extend(getattr(module, "PERIODIC_JOBS", []))
    return jobs


class Command(BaseCommand):
    help = (
        "Create the platform's periodic jobs (heartbeat, backups, clean-ups, samples) in "
        "Celery beat's database schedule. Safe to run at every deploy: existing jobs keep "
        "the timing and enabled flag an administrator set in the admin, unless --reset."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Put every declared job's schedule back to the default from the code.",
        )

    @transaction.atomic
    def handle(self, *args: Any, reset: bool = False, **options: Any) -> None:
        created = 0
        for job in declared_jobs():
            schedule_fields = self._schedule(job)
            defaults: dict[str, Any] = {
                "task": job.task,
                "kwargs": json.dumps(job.kwargs),
                "queue": job.queue,
                "description": job.description,
                **schedule_fields,
            }
            task, was_created = PeriodicTask.objects.get_or_create(name=job.name, defaults=defaults)
            if was_created:
                created += 1
                self.stdout.write(f"  created  {job.name}")
            elif reset:
                for attr, value in defaults.items():
                    setattr(task, attr, value)
                task.save()
                self.stdout.write(f"  reset    {job.name}")
            else:
                self.stdout.write(f"  kept     {job.name}")
        self.stdout.write(self.style.SUCCESS(f"Periodic jobs ready ({created} new)."))

    @staticmethod
    def _schedule(job: PeriodicJob) -> dict[str, Any]:
        if isinstance(job.schedule, Interval):
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=job.schedule.seconds, period=IntervalSchedule.SECONDS
            )
            return {"interval": interval, "crontab": None}
        if not isinstance(job.schedule, Crontab):
            raise TypeError(f"{job.name}: unknown schedule {job.schedule!r}")
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=job.schedule.minute,
            hour=job.schedule.hour,
            day_of_week=job.schedule.day_of_week,
            day_of_month=job.schedule.day_of_month,
            month_of_year=job.schedule.month_of_year,
            timezone=settings.TIME_ZONE,
        )
        return {"crontab": crontab, "interval": None}
