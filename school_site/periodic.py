"""Periodic jobs are declared in code (each app's `schedules.py`) and written into
django-celery-beat's tables by `manage.py setup_periodic_tasks`, which is idempotent: it
creates what is missing and leaves an administrator's later edits (enabled flag, timing) alone
unless `--reset` is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Interval:
    seconds: int


@dataclass(frozen=True)
class Crontab:
    minute: str = "0"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"


def every(*, seconds: int = 0, minutes: int = 0, hours: int = 0) -> Interval:
    return Interval(seconds=seconds + 60 * minutes + 3600 * hours)


def cron(**fields: str) -> Crontab:
    return Crontab(**fields)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    schedule: Interval | Crontab
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    description: str = ""
