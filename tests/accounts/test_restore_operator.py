"""The two-factor re-check of a restore: the operator names themself and gives a current
code; a refused restore touches nothing."""

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
from tests.backups.conftest import keyset, local_backups  # noqa: F401  (fixtures)

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
