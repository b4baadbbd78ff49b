"""The S3 repository down while the school keeps working: PostgreSQL keeps the WAL it cannot
archive (pg_stat_archiver counts the failures, the segments wait as .ready files), the `pitr`
health check fails and the `pitr_archiving` alert leaves by e-mail; when S3 is back the
waiting WAL is archived, the alert resolves, and a restore to `latest` has every row that was
committed, the outage's included. S3 is moto's server behind a TLS front (nginx); the outage
is that front stopped, as a network cut or a provider's outage looks to pgBackRest.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.backups.conftest import s3_client
from tests.backups.pitr import PitrPlatform, add_students, available, count, pitr_platform, restore
from tests.backups.tls_front import nginx_available, pitr_s3_env, tls_front

pytestmark = [
    pytest.mark.skipif(
        bool(available() or nginx_available()), reason=available() or nginx_available() or "-"
    ),
    pytest.mark.xdist_group(name="pitr-s3-outage"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]

# The health check calls archiving stale after this long without an archived segment.
MAX_ARCHIVE_AGE = 20


def archiver(p: PitrPlatform) -> dict[str, Any]:
    row = p.psql(
        "SELECT json_build_object('archived', archived_count, 'failed', failed_count, "
        "'last_archived', coalesce(last_archived_wal, ''), "
        "'archived_age', extract(epoch FROM now() - last_archived_time), "
        "'current', pg_walfile_name(pg_current_wal_lsn())) FROM pg_stat_archiver"
    )
    return json.loads(row)


def ready(p: PitrPlatform) -> list[str]:
    """Segments PostgreSQL holds until they are archived."""
    return sorted(f.name for f in (p.data / "pg_wal" / "archive_status").glob("*.ready"))


def wait_for(what: str, condition: Callable[[], bool], seconds: float, tick: float = 1) -> float:
    clock = time.monotonic()
    while not condition():
        assert time.monotonic() - clock < seconds, f"not within {seconds} s: {what}"
        time.sleep(tick)
    return time.monotonic() - clock


def monitor(p: PitrPlatform) -> dict[str, Any]:
    """`monitor_system --alert --json`, as cron runs it: the health report, and the alert
    transitions it caused (each one notified)."""
    done = p.manage("monitor_system", "--alert", "--json", check=False, timeout=300)
    assert done.returncode in {0, 1, 2}, done.stderr
    return json.loads(done.stdout)


def pitr_outcome(report: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == "pitr")


def alert_mails(mail_dir: Path) -> list[str]:
    return [
        line
        for message in sorted(mail_dir.glob("*.log"))
        for line in message.read_text().splitlines()
        if line.startswith("Subject:") and "WAL archiving or physical backups failing" in line
    ]


def test_wal_waits_while_s3_is_down_the_alert_fires_and_no_committed_row_is_lost(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pgBackRest retries a refused connection for io-timeout at each of its layers (socket,
    # TLS, HTTP request, command): at the default 60 s one archive-push against a dead store
    # takes about four minutes before PostgreSQL counts it failed. The cluster (whose
    # archive_command inherits the environment of `pg_ctl start`) gets 10 s instead.
    monkeypatch.setenv("PGBACKREST_IO_TIMEOUT", "10")
    bucket = f"pitr-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    mail_dir = tmp_path / "mail"
    with tls_front(moto_endpoint) as front, pitr_platform() as p:
        p.extra_env = {
            "PITR_REPOS": "s3",
            **pitr_s3_env(front, bucket),
            "PITR_MAX_ARCHIVE_AGE_SECONDS": str(MAX_ARCHIVE_AGE),
            "EMAIL_URL": f"filemail:///{mail_dir}",
            "ADMINS": "Ops:ops@example.org",
            "MONITORING_CELERY_PING_TIMEOUT": "0.2",
            "LOG_LEVEL": "CRITICAL",
        }
        p.manage("pitr", "setup")
        p.manage("backup_now", "--physical", "full")
        add_students(p, "BEFORE", 10)
        closed = p.psql("SELECT pg_walfile_name(pg_switch_wal())")
        wait_for("the first rows archived", lambda: archiver(p)["last_archived"] >= closed, 60)
        report = monitor(p)
        assert pitr_outcome(report)["state"] == "ok", pitr_outcome(report)
        assert "pitr_archiving" not in {name for name, _ in report["alerts"]}

        # S3 goes away; the school goes on committing.
        front.stop()
        down_at = time.monotonic()
        failed_before = archiver(p)["failed"]
        committed = 0
        first_failure = None
        while time.monotonic() - down_at < 300:
            add_students(p, f"OUT{committed:03d}-", 4)
            committed += 1
            a = archiver(p)
            if first_failure is None and a["failed"] > failed_before:
                first_failure = time.monotonic() - down_at
            if (
                a["failed"] > failed_before
                and len(ready(p)) >= 2
                and (a["archived_age"] or 0) > MAX_ARCHIVE_AGE
            ):
                break
            time.sleep(2)
        a = archiver(p)
        assert a["failed"] > failed_before, a
        waiting = ready(p)
        assert len(waiting) >= 2 and a["last_archived"] < waiting[0].removesuffix(".ready")
        # The operator's view: the check fails and says why, the alert leaves once.
        report = monitor(p)
        check = pitr_outcome(report)
        assert check["state"] == "failed", check
        assert "archiving fails" in check["message"] and "wait to be archived" in check["message"]
        assert ["pitr_archiving", "opened"] in report["alerts"]
        mails = alert_mails(mail_dir)
        assert len(mails) == 1 and "ALERT" in mails[0], mails
        status = json.loads(p.manage("pitr", "status", "--json").stdout)
        assert status["archive"]["failed_count"] > failed_before
        exposure = a["archived_age"]

        # S3 is back: the waiting WAL goes out without anyone's help.
        front.start()
        back_at = time.monotonic()
        add_students(p, "AFTER", 6)
        closed = p.psql("SELECT pg_walfile_name(pg_switch_wal())")
        catch_up = wait_for(
            "the waiting WAL archived",
            lambda: not ready(p) and archiver(p)["last_archived"] >= closed,
            300,
        )
        outage = back_at - down_at
        report = monitor(p)
        assert pitr_outcome(report)["state"] == "ok", pitr_outcome(report)
        assert ["pitr_archiving", "resolved"] in report["alerts"]
        assert len(alert_mails(mail_dir)) == 2

        done = restore(p, "--to-time", "latest")
        assert "Restored to latest" in done.stdout, done.stdout + done.stderr
        port = int(done.stdout.split("127.0.0.1:")[1].split(".")[0])
        assert count(p, "BEFORE", port) == 10
        assert count(p, "OUT", port) == 4 * committed == count(p, "OUT")
        assert count(p, "AFTER", port) == 6
        restored = done.stdout.split("The restored cluster runs in ")[1].split(" on ")[0]
        p.ctl("-m", "fast", "stop", data=Path(restored))
        print(  # the run's figures, read with -s
            f"outage {outage:.0f} s, first failed archive-push counted after "
            f"{first_failure or 0:.0f} s, {committed} commits during it, "
            f"{len(waiting)} segments waiting, newest archive {exposure:.0f} s old at the alert, "
            f"caught up {catch_up:.1f} s after S3 returned, 0 committed rows lost"
        )
