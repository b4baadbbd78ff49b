"""The two-factor re-check of a restore: the operator names themself and gives a current
code; an operator with no authenticator is refused unless they break the glass, which is
audited and alerted; a refused restore touches nothing."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from backups.models import BackupRun
from backups.services import backup_database_run
from students.models import Student
from tests.accounts.conftest import totp_code
from tests.backups.conftest import keyset, local_backups, webhook_recorder  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def backup(world, local_backups) -> BackupRun:  # noqa: F811
    return backup_database_run()


def test_restore_needs_a_named_district_administrator(world, district_user, backup) -> None:
    with pytest.raises(CommandError, match="--operator"):
        call_command("restore_backup", "latest")
    with pytest.raises(CommandError, match="not an active district administrator"):
        call_command("restore_backup", "latest", "--operator", world.admin.username)
    with pytest.raises(CommandError, match="not an active district administrator"):
        call_command("restore_backup", "latest", "--operator", "nobody")


def test_a_wrong_code_refuses_the_restore_and_touches_nothing(
    world, district_user, backup, monkeypatch
) -> None:
    device = TOTPDevice.objects.create(user=district_user, name="phone", confirmed=True)
    students = Student.objects.count()
    Student.objects.filter(pk=world.students[0].pk).update(first_name="Changed-after-backup")
    with pytest.raises(CommandError, match="uses two-factor"):
        call_command("restore_backup", "latest", "--force", "--operator", district_user.username)
    with pytest.raises(CommandError, match="Two-factor code refused"):
        call_command(
            "restore_backup",
            "latest",
            "--force",
            "--operator",
            district_user.username,
            "--otp-token",
            "12345",
        )
    # The live database is as it was: the change made after the backup is still there.
    assert Student.objects.count() == students
    assert Student.objects.get(pk=world.students[0].pk).first_name == "Changed-after-backup"
    assert AuditEvent.objects.filter(actor=district_user, action="2fa_verify_failed").exists()

    # The right code, from the environment (CI has no terminal to type it in), lets the
    # restore go on to its own checks: without --force the live database (not empty) is
    # refused for that reason, past the operator check.
    time.sleep(1.1)  # the wrong code made the device wait a second
    monkeypatch.setenv("RESTORE_OTP_TOKEN", totp_code(device))
    with pytest.raises(CommandError) as past_the_operator:
        call_command("restore_backup", "latest", "--operator", district_user.username)
    assert "not empty" in str(past_the_operator.value)


def test_an_operator_without_an_authenticator_is_refused(world, district_user, backup) -> None:
    Student.objects.filter(pk=world.students[0].pk).update(first_name="Changed-after-backup")
    with pytest.raises(CommandError, match="no confirmed authenticator"):
        call_command("restore_backup", "latest", "--force", "--operator", district_user.username)
    assert Student.objects.get(pk=world.students[0].pk).first_name == "Changed-after-backup"
    assert not AuditEvent.objects.filter(action="restore_break_glass").exists()


def test_break_glass_is_audited_and_alerted_before_the_restore_goes_on(
    world, district_user, backup, settings, mailoutbox
) -> None:
    settings.ADMINS = [("Ops", "ops@example.org")]
    posted: list[dict] = []
    settings.MONITORING_ALERT_WEBHOOK_URL = webhook_recorder(posted)
    reason = "ticket 4521: server lost, phone not enrolled yet"
    with pytest.raises(CommandError) as past_the_operator:
        call_command(
            "restore_backup",
            "latest",
            "--operator",
            district_user.username,
            "--break-glass",
            reason,
        )
    # Past the operator check: refused only because the live database is not empty.
    assert "not empty" in str(past_the_operator.value)
    event = AuditEvent.objects.get(action="restore_break_glass")
    assert event.actor == district_user
    assert event.changes["reason"] == reason and event.changes["backups"] == [backup.pk]
    # One alert path: monitoring's notifier, by e-mail and to its webhook.
    assert [m for m in mailoutbox if "break-glass" in m.subject and reason in m.body]
    assert posted and posted[0]["alert"] == "restore_break_glass"
    assert district_user.username in posted[0]["summary"] and reason in posted[0]["summary"]


def test_break_glass_needs_a_reason_and_never_replaces_a_code(world, district_user, backup) -> None:
    with pytest.raises(CommandError, match="needs a reason"):
        call_command(
            "restore_backup", "latest", "--operator", district_user.username, "--break-glass", "x"
        )
    assert not AuditEvent.objects.filter(action="restore_break_glass").exists()
    TOTPDevice.objects.create(user=district_user, name="phone", confirmed=True)
    with pytest.raises(CommandError, match="uses two-factor"):
        call_command(
            "restore_backup",
            "latest",
            "--operator",
            district_user.username,
            "--break-glass",
            "lost my phone, restoring anyway",
        )
    assert not AuditEvent.objects.filter(action="restore_break_glass").exists()
