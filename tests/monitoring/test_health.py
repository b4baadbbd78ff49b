"""The health dashboard, readiness and liveness, against the real PostgreSQL and Redis."""

from __future__ import annotations

import datetime

import pytest
from django.db.migrations.recorder import MigrationRecorder
from django.urls import reverse
from django.utils import timezone

from monitoring.checks import CHECK_NAMES, health_report
from monitoring.models import Heartbeat
from monitoring.services import heartbeat_record
from tests.monitoring.conftest import BOTH_DATABASES, PUBLIC_ADDRESS
from tests.students.factories import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.django_db(databases=BOTH_DATABASES)]


def states(page) -> dict[str, str]:
    """check name -> state, read from the dashboard's rows."""
    import re

    return dict(re.findall(r'data-check="([^"]+)" data-state="(\w+)"', page.content.decode()))


@pytest.fixture
def recent_backup(backups_contract):
    return backups_contract(last_verified_backup_at=lambda: timezone.now())


def test_liveness_touches_nothing(client) -> None:
    response = client.get(reverse("monitoring:liveness"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_dashboard_shows_every_check_to_a_district_admin(
    client, district_user, world, recent_backup
) -> None:
    heartbeat_record(name="celery-beat")
    client.force_login(district_user)
    page = client.get(reverse("monitoring:health"), REMOTE_ADDR=PUBLIC_ADDRESS)
    assert page.status_code == 200  # no worker in unit tests: failed, but not critical
    shown = states(page)
    for name in ("database", "migrations", "db_pool", "cache", "storage:default", "backup"):
        assert shown[name] == "ok", (name, shown)
    assert shown["celery_beat"] == "ok"
    assert shown["celery"] == "failed"
    assert {n for n in shown if n.startswith("disk:")}
    assert "memory" in shown
    assert b"System health" in page.content


def test_cache_outage_shows_red_while_the_site_keeps_serving(
    client, world, district_user, dead_cache
) -> None:
    client.force_login(district_user)
    page = client.get(reverse("monitoring:health"), REMOTE_ADDR=PUBLIC_ADDRESS)
    assert page.status_code == 200  # the cache is not critical: degraded, not down
    assert states(page)["cache"] == "failed"
    assert 'data-check="cache" data-state="failed"' in page.content.decode()
    assert "the cache did not return the value just written" in page.content.decode()
    # readiness keeps the node in rotation, and the staff pages still render
    assert client.get(reverse("monitoring:readiness")).status_code == 200
    client.logout()
    assert client.login(username=world.registrar.username, password=PASSWORD)
    assert client.get(reverse("students:dashboard")).status_code == 200
    assert client.get(reverse("students:student_list")).status_code == 200


def test_readiness_is_503_when_a_critical_check_fails(client, db) -> None:
    ready = client.get(reverse("monitoring:readiness"))
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}
    # The code has a migration the database has not: new code on an old schema.
    latest = MigrationRecorder.Migration.objects.filter(app="monitoring").order_by("-id").first()
    latest.delete()
    from monitoring.checks import migrations_cache_clear

    migrations_cache_clear()
    ready = client.get(reverse("monitoring:readiness"))
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "migrations": "failed"}
    # the dashboard says critical with the same status code, and why
    dashboard = client.get(reverse("monitoring:health"), HTTP_ACCEPT="application/json")
    assert dashboard.status_code == 503
    assert dashboard.json()["status"] == "critical"
    migrations = next(c for c in dashboard.json()["checks"] if c["name"] == "migrations")
    assert migrations["message"].startswith("1 unapplied migration(s), first monitoring.")


def test_a_check_made_critical_in_settings_decides_readiness(client, db, settings, dead_cache):
    settings.MONITORING_CRITICAL_CHECKS = ["database", "migrations", "cache"]
    ready = client.get(reverse("monitoring:readiness"))
    assert ready.status_code == 503
    assert set(ready.json()["checks"]) == {"database", "migrations", "cache"}


def test_dashboard_json_is_for_probes_on_the_allowlist_or_with_the_token(
    client, db, settings
) -> None:
    url = reverse("monitoring:health")
    # loopback (the default allowlist): JSON by Accept header or ?format=json
    report = client.get(url, HTTP_ACCEPT="application/json")
    assert report.status_code == 200
    body = report.json()
    assert body["status"] in {"ok", "warning"}
    names = {c["name"] for c in body["checks"]}
    assert {"database", "cache", "storage:default", "celery", "celery_beat", "backup"} <= names
    database = next(c for c in body["checks"] if c["name"] == "database")
    assert database["state"] == "ok" and database["critical"] is True
    assert client.get(url + "?format=json").json()["checks"]
    # an unknown address is refused, a bearer token lets it in
    assert client.get(url + "?format=json", REMOTE_ADDR=PUBLIC_ADDRESS).status_code == 403
    settings.MONITORING_METRICS_TOKEN = "probe-token-123"
    ok = client.get(
        url + "?format=json",
        REMOTE_ADDR=PUBLIC_ADDRESS,
        HTTP_AUTHORIZATION="Bearer probe-token-123",
    )
    assert ok.status_code == 200
    # a browser that is not logged in is sent to the login page
    page = client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS)
    assert page.status_code == 302 and reverse("login") in page["Location"]


def test_staff_who_are_not_district_admins_are_refused(client, world) -> None:
    for user in (world.admin, world.teacher):
        client.force_login(user)
        response = client.get(reverse("monitoring:health"), REMOTE_ADDR=PUBLIC_ADDRESS)
        assert response.status_code == 403


def test_celery_beat_check_reads_the_heartbeat_age(db, settings) -> None:
    assert health_report().outcome("celery_beat").state == "failed"  # never ran
    heartbeat_record(name="celery-beat")
    outcome = health_report().outcome("celery_beat")
    assert outcome.state == "ok" and "last heartbeat" in outcome.message
    Heartbeat.objects.filter(name="celery-beat").update(
        last_seen=timezone.now() - datetime.timedelta(seconds=600)
    )
    outcome = health_report().outcome("celery_beat")
    assert outcome.state == "failed" and "more than 180 s" in outcome.message
    settings.MONITORING_BEAT_MAX_AGE_SECONDS = 900
    assert health_report().outcome("celery_beat").state == "ok"


def test_backup_check_follows_the_backups_contract(db, backups_contract) -> None:
    backups_contract()  # the module exists, the function does not (yet)
    outcome = health_report().outcome("backup")
    assert (outcome.state, outcome.message) == ("warning", "no backup recorded")
    backups_contract(last_verified_backup_at=lambda: None)
    assert health_report().outcome("backup").state == "warning"
    backups_contract(last_verified_backup_at=lambda: timezone.now() - datetime.timedelta(hours=2))
    outcome = health_report().outcome("backup")
    assert outcome.state == "ok" and "2.0 h ago" in outcome.message
    backups_contract(last_verified_backup_at=lambda: timezone.now() - datetime.timedelta(hours=50))
    outcome = health_report().outcome("backup")
    assert outcome.state == "failed" and "50.0 h ago" in outcome.message
    assert not outcome.critical  # a stale backup is an alert, not a reason to stop serving


def test_every_configured_storage_is_checked(db, settings, tmp_path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where a folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
        "broken": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker)},
        },
    }
    report = health_report()
    assert report.outcome("storage:archive").state == "ok"
    assert report.outcome("storage:broken").state == "failed"
    assert report.outcome("storage:staticfiles") is None  # skipped by default
    assert list((tmp_path / "archive").rglob("*.txt")) == []  # the probe file is deleted


def test_pool_check_reports_the_pools_use(db) -> None:
    outcome = health_report().outcome("db_pool")
    assert outcome.state == "ok"
    assert "connections" in outcome.message


def test_settings_validate_the_same_check_names_the_registry_knows() -> None:
    import school_site.settings as module

    assert module._MONITORING_CHECK_NAMES == set(CHECK_NAMES)
