"""Celery end to end: a real worker on the Redis broker, and beat's database schedule."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from monitoring.models import Heartbeat
from monitoring.tasks import beat_heartbeat
from tests.helpers import running_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(tmp_path, live_celery):
    """Start real workers consuming a queue of their own on the Redis broker."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    started = iter(range(100))
    with contextlib.ExitStack() as stack:

        def start(*extra: str) -> str:
            log = tmp_path / f"worker-{next(started)}.log"
            stack.enter_context(running_worker(queue, log, *extra))
            return queue

        yield start


def test_task_round_trip_through_a_real_worker(worker) -> None:
    queue = worker()
    result = beat_heartbeat.apply_async(queue=queue)
    stamped = result.get(timeout=60)
    beat = Heartbeat.objects.get(name="celery-beat")
    assert beat.last_seen.isoformat() == stamped
    assert beat.hostname.startswith(queue)
    assert beat.count == 1


def test_beat_runs_the_demo_periodic_task_from_the_database_schedule(worker, tmp_path) -> None:
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    queue = worker("--beat", "--schedule", str(tmp_path / "beat-schedule"))
    PeriodicTask.objects.create(
        name="heartbeat (test)",
        task="monitoring.tasks.beat_heartbeat",
        interval=every_second,
        queue=queue,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        beat = Heartbeat.objects.filter(name="celery-beat").first()
        if beat and beat.count >= 2:
            break
        time.sleep(0.5)
    else:
        logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("worker-*.log"))
        pytest.fail(f"beat never ran the heartbeat twice:\n{logs}")


def test_setup_periodic_tasks_is_idempotent_and_keeps_admin_edits() -> None:
    from django.core.management import call_command

    call_command("setup_periodic_tasks")
    task = PeriodicTask.objects.get(task="monitoring.tasks.beat_heartbeat")
    task.enabled = False
    task.save()
    call_command("setup_periodic_tasks")
    assert PeriodicTask.objects.filter(task="monitoring.tasks.beat_heartbeat").count() == 1
    assert PeriodicTask.objects.get(pk=task.pk).enabled is False
    call_command("setup_periodic_tasks", "--reset")
    assert PeriodicTask.objects.get(pk=task.pk).interval.every == 60
