"""Alerts: one message per incident, by e-mail to ADMINS and to a webhook on loopback."""

from __future__ import annotations

import datetime

import pytest
from django.core import mail
from django.utils import timezone

from monitoring.checks import health_report
from monitoring.models import LATENCY_BUCKET_FIELDS, AlertState, RequestMinute
from monitoring.services import alert_conditions_get, alert_state_update, alerts_evaluate
from tests.monitoring.conftest import BOTH_DATABASES

pytestmark = [pytest.mark.unit, pytest.mark.django_db(databases=BOTH_DATABASES)]


def mails_about(title: str) -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if title in m.subject]


def test_a_full_disk_sends_one_alert_until_it_recovers(settings, webhook) -> None:
    settings.MONITORING_ALERT_DISK_PERCENT = 0  # any real disk is "full"
    report = health_report()
    first = alerts_evaluate(report=report)
    second = alerts_evaluate(report=report)
    assert ("disk_full", "opened") in first
    assert "disk_full" not in {name for name, _ in second}  # still open: quiet
    alerts = mails_about("Disk almost full")
    assert len(alerts) == 1
    assert alerts[0].subject.startswith("[Schoolhouse] ALERT Disk almost full: ")
    assert alerts[0].to == ["ops@example.org"]
    assert "% used (limit 0 %)" in alerts[0].body
    state = AlertState.objects.get(name="disk_full")
    assert state.is_open and state.incidents == 1 and state.last_notified_at is not None

    settings.MONITORING_ALERT_DISK_PERCENT = 100  # recovered
    assert ("disk_full", "resolved") in alerts_evaluate(report=report)
    alerts_evaluate(report=report)
    resolved = [m for m in mails_about("Disk almost full") if "RESOLVED" in m.subject]
    assert len(resolved) == 1 and len(mails_about("Disk almost full")) == 2
    state.refresh_from_db()
    assert not state.is_open and state.resolved_at is not None

    disk_posts = [p["body"] for p in webhook if p["body"]["alert"] == "disk_full"]
    assert [p["state"] for p in disk_posts] == ["firing", "resolved"]
    assert all(p["path"] == "/hook" and p["content_type"] == "application/json" for p in webhook)
    assert disk_posts[0]["title"] == "Disk almost full" and disk_posts[1]["resolved_at"]


def test_a_second_incident_is_a_new_message(settings) -> None:
    settings.MONITORING_ALERT_GRACE_SECONDS = {"worker_missing": 0}
    for failing in (True, True, False, True):
        alert_state_update(name="worker_missing", failing=failing, summary="no worker")
    assert [m.subject.split()[1] for m in mails_about("Celery worker missing")] == [
        "ALERT",
        "RESOLVED",
        "ALERT",
    ]
    assert AlertState.objects.get(name="worker_missing").incidents == 2


def test_a_worker_missing_only_briefly_raises_no_alert(settings) -> None:
    """A worker still starting (make run, a deploy) misses the first pings: the incident opens
    only once the rule has failed for its whole grace period, counted from its first failure."""
    settings.MONITORING_ALERT_GRACE_SECONDS = {"worker_missing": 120}
    start = timezone.now()
    assert alert_state_update(name="worker_missing", failing=True, summary="no worker") is None
    assert alert_state_update(name="worker_missing", failing=False) is None  # it answered
    assert alert_state_update(name="worker_missing", failing=True, summary="no worker") is None
    state = AlertState.objects.get(name="worker_missing")
    assert not state.is_open and state.incidents == 0 and state.failing_since >= start
    assert mails_about("Celery worker missing") == []

    # Still failing two minutes after the first failure: now it is an incident.
    AlertState.objects.filter(pk=state.pk).update(
        failing_since=timezone.now() - datetime.timedelta(seconds=121)
    )
    assert alert_state_update(name="worker_missing", failing=True, summary="no worker") == "opened"
    assert len(mails_about("Celery worker missing")) == 1
    # Other rules have no grace period: a backup failure alerts at once.
    assert alert_state_update(name="backup_failed", failing=True, summary="x") == "opened"


def test_a_dead_webhook_does_not_stop_the_email(settings) -> None:
    from tests.helpers import free_port

    settings.MONITORING_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/closed"
    settings.MONITORING_ALERT_WEBHOOK_TIMEOUT = 1.0
    assert alert_state_update(name="backup_failed", failing=True, summary="x") == "opened"
    assert len(mails_about("Backup failed")) == 1
    assert alert_state_update(name="backup_failed", failing=True, summary="x") is None


def test_rules_read_the_error_rate_backups_workers_and_beat(settings, backups_contract) -> None:
    minute = timezone.now().replace(second=0, microsecond=0)
    RequestMinute.objects.create(
        minute=minute - datetime.timedelta(minutes=1),
        route="students:dashboard",
        requests=40,
        server_errors=4,
        **{LATENCY_BUCKET_FIELDS[0]: 40},
    )
    backups_contract(last_backup_failed=lambda: True)
    conditions = {c.name: c for c in alert_conditions_get(report=health_report())}
    assert conditions["error_rate"].failing is True
    assert "10.0 % of 40 requests" in conditions["error_rate"].summary
    assert conditions["backup_failed"].failing is True
    assert conditions["worker_missing"].failing is True  # no worker in unit tests
    assert conditions["beat_stopped"].failing is True  # no heartbeat either
    assert conditions["database_unreachable"].failing is False
    settings.MONITORING_ALERT_ERROR_RATE_MIN_REQUESTS = 100  # too few requests to judge
    backups_contract()  # the backups app does not say: no alert
    conditions = {c.name: c for c in alert_conditions_get(report=health_report())}
    assert conditions["error_rate"].failing is False
    assert conditions["backup_failed"].failing is False


def test_with_the_database_down_the_state_lives_in_the_cache() -> None:
    # What alerts_evaluate does when the database check failed: no AlertState row is touched.
    assert (
        alert_state_update(
            name="database_unreachable", failing=True, summary="down", use_database=False
        )
        == "opened"
    )
    assert alert_state_update(name="database_unreachable", failing=True, use_database=False) is None
    assert not AlertState.objects.filter(name="database_unreachable").exists()
    # back up: the incident is folded into the table and resolved with one message
    assert alert_state_update(name="database_unreachable", failing=False) == "resolved"
    state = AlertState.objects.get(name="database_unreachable")
    assert not state.is_open and state.incidents == 1 and state.summary == "down"
    subjects = [m.subject for m in mails_about("Database unreachable")]
    assert len(subjects) == 2 and "ALERT" in subjects[0] and "RESOLVED" in subjects[1]


def test_the_alert_task_evaluates_the_rules(settings) -> None:
    from monitoring.tasks import alerts_evaluate as task

    settings.MONITORING_ALERT_DISK_PERCENT = 0
    assert ["disk_full", "opened"] in task.delay().get(timeout=30)
