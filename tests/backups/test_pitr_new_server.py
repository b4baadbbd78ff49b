"""Disaster recovery as README's runbook tells it: the database server is lost (its
postmaster killed, its data directory, configuration and run history deleted); a new server
gets nothing but the repository and the passphrase file, and `recover_server` brings the
platform's database back, checked against the operator's two-factor code, archiving again.
The whole recovery is timed."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from tests.backups.pitr import (
    OPERATOR,
    PitrPlatform,
    add_students,
    available,
    operator_code,
    pitr_platform,
)

pytestmark = [
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
    pytest.mark.xdist_group(name="pitr-new-server"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]


def students(p: PitrPlatform) -> int:
    return int(p.psql("SELECT count(*) FROM students_student"))


def lose_the_server(p: PitrPlatform) -> None:
    """SIGKILL the postmaster, then delete everything but the repository and the keys."""
    pid = int((p.data / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    for child in p.root.iterdir():
        if child.name in {"repo", "keys"}:
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def test_a_new_server_from_the_repository_and_the_keys(capsys) -> None:
    with pitr_platform() as p:
        p.manage("pitr", "setup")
        p.manage("backup_now", "--physical", "full")
        add_students(p, "AFTER-BACKUP-", 40)
        expected = students(p)
        # Shipped before the loss (archive_timeout bounds what a real crash loses; the RPO
        # test measures that): the segment holding the rows is closed and archived.
        p.psql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                p.psql(
                    "SELECT last_archived_wal >= pg_walfile_name(pg_current_wal_lsn() - 1) "
                    "FROM pg_stat_archiver"
                )
                == "t"
            ):
                break
            time.sleep(0.5)
        lose_the_server(p)
        assert sorted(c.name for c in p.root.iterdir()) == ["keys", "repo"]

        # A wrong code: the restored files are removed again, the server is as it was.
        done = p.manage(
            "recover_server", "--operator", OPERATOR, "--otp-token", "000000", check=False
        )
        assert done.returncode == 1 and "Recovery refused" in done.stderr, done.stderr
        assert not p.data.exists() or not any(p.data.iterdir())

        clock = time.monotonic()
        done = p.manage("recover_server", "--operator", OPERATOR, "--otp-token", operator_code())
        seconds = time.monotonic() - clock
        assert "Recovered to latest" in done.stdout, done.stdout + done.stderr
        # Every row committed before the loss is back, on the server's own port.
        assert students(p) == expected
        # It archives again (a new timeline of the same stanza), and the platform works.
        assert "archives its WAL through pgBackRest" in p.manage("pitr", "setup").stdout
        assert "(Incremental," in p.manage("backup_now", "--physical", "incr").stdout
        assert "restore_new_server" in p.psql(
            "SELECT string_agg(action, ',') FROM audit_auditevent"
        )
        with capsys.disabled():
            print(f"\nnew server recovered in {seconds:.1f} s:\n{done.stdout}")
