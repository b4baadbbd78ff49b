"""The backup download asks for a fresh two-factor code: a session verified at log-in but
not in the last ACCOUNTS_OTP_RECHECK_MINUTES gets the code page, not the district's data."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.services import VERIFIED_AT_KEY
from audit.models import AuditEvent
from backups.services import backup_database_run
from tests.accounts.conftest import redirect_path, totp_code
from tests.conftest import build_school
from tests.students.factories import district_admin

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_stale_code_gets_the_code_page_and_a_fresh_one_the_backup(
    client, local_backups, settings
) -> None:
    build_school("North", students=1)
    user = district_admin("district")
    run = backup_database_run()
    client.force_login(user)  # verified by a code just now (tests/conftest.py)
    link = client.post(reverse("admin:backups_backuprun_download_link", args=[run.pk]))["Location"]

    # The code was given at log-in, longer ago than the re-check allows.
    session = client.session
    session[VERIFIED_AT_KEY] = int(time.time()) - settings.ACCOUNTS_OTP_RECHECK_MINUTES * 60 - 5
    session.save()
    refused = client.get(link)
    assert refused.status_code == 302
    assert redirect_path(refused) == reverse("accounts:two_factor_verify")
    assert "recheck=1" in refused["Location"]
    assert not AuditEvent.objects.filter(action="backup_download").exists()

    device = TOTPDevice.objects.get(user=user, confirmed=True)
    answer = client.post(
        reverse("accounts:two_factor_verify"), {"token": totp_code(device), "next": link}
    )
    assert answer.status_code == 302 and answer["Location"] == link
    download = client.get(link)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == (local_backups / run.object_key).read_bytes()
    assert AuditEvent.objects.filter(action="backup_download", actor=user).count() == 1
