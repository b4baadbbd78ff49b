"""Report card jobs, routed to the maintenance queue (settings): a grade level takes minutes."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="reportcards.tasks.report_card_batch_task")
def report_card_batch_task(*, batch_id: int) -> str:
    from .services import batch_run

    return batch_run(batch_id=batch_id).status
