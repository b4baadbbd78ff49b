"""System samples from the real host, PostgreSQL and Redis; the periodic jobs."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django_celery_beat.models import PeriodicTask

from monitoring.models import SystemSample
from monitoring.services import broker_queue_lengths, system_sample_take

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def queue_with_messages(settings):
    """A queue of our own in the real broker with three waiting messages (one of them on a
    priority list, as kombu stores prioritised messages)."""
    name = f"test-samples-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = name
    settings.CELERY_TASK_ROUTES = {}
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.lpush(name, "m1", "m2")
    client.lpush(f"{name}\x06\x163", "m3")
    yield name
    client.delete(name, f"{name}\x06\x163")
    client.close()


def test_a_sample_measures_host_database_redis_and_queues(queue_with_messages) -> None:
    sample = system_sample_take()
    assert SystemSample.objects.get() == sample
    assert 0 <= sample.cpu_percent <= 100
    assert 0 < sample.memory_percent < 100
    assert 0 < sample.disk_percent < 100
    assert 0 < sample.disk_used_bytes < sample.disk_total_bytes
    assert sample.db_size_bytes > 1024 * 1024  # a migrated PostgreSQL database
    assert sample.redis_used_memory_bytes > 0
    assert sample.queue_lengths == {queue_with_messages: 3}
    assert sample.backup_size_bytes is None  # no backups contract answered in this test


def test_a_sample_survives_a_dead_redis(dead_cache, settings) -> None:
    settings.CELERY_BROKER_URL = django_settings.CACHES["default"]["LOCATION"]  # dead too
    sample = system_sample_take()
    assert sample.redis_used_memory_bytes is None and sample.queue_lengths == {}
    assert sample.pk is not None


def test_queue_lengths_are_empty_for_other_brokers(settings) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"
    assert broker_queue_lengths() == {}


def test_backup_size_comes_from_the_backups_contract(backups_contract) -> None:
    from django.utils import timezone

    backups_contract(
        backup_run_history=lambda since: [
            {"started_at": timezone.now(), "size_bytes": 123_456, "duration_seconds": 3.0}
        ]
    )
    assert system_sample_take().backup_size_bytes == 123_456


def test_periodic_jobs_are_declared_for_beat() -> None:
    from django.core.management import call_command

    call_command("setup_periodic_tasks")
    tasks = dict(PeriodicTask.objects.values_list("task", "name"))
    for task in (
        "monitoring.tasks.beat_heartbeat",
        "monitoring.tasks.system_sample_take",
        "monitoring.tasks.alerts_evaluate",
        "monitoring.tasks.monitoring_prune",
    ):
        assert task in tasks, task
    sample_job = PeriodicTask.objects.get(task="monitoring.tasks.system_sample_take")
    assert sample_job.interval.every == 60
    assert PeriodicTask.objects.get(task="monitoring.tasks.monitoring_prune").crontab.minute == "17"


def test_the_tasks_run_their_services() -> None:
    from monitoring.tasks import monitoring_prune, system_sample_take

    pk = system_sample_take.delay().get(timeout=30)  # eager in unit tests
    assert SystemSample.objects.filter(pk=pk).exists()
    assert set(monitoring_prune.delay().get(timeout=30)) == {
        "slow_queries",
        "request_minutes",
        "system_samples",
    }
