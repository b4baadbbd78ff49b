"""Celery tasks of the school record. They take ids and call a service."""

from __future__ import annotations

import datetime

from celery import shared_task


@shared_task(
    name="students.tasks.absence_alerts_send_task",
    autoretry_for=(ConnectionError,),
    retry_backoff=True,
    max_retries=5,
)
def absence_alerts_send_task(*, section_id: int, date: str) -> int:
    from .absence_alerts import absence_alerts_send

    return len(absence_alerts_send(section_id=section_id, date=datetime.date.fromisoformat(date)))
