"""The recovery point, measured: a writer commits numbered rows and notes when each commit
returned; the primary's postmaster is killed (SIGKILL) and its data directory deleted; a
restore of the repository to `latest` must hold every row committed earlier than
archive_timeout (+ a small margin) before the kill. The RPO (from the kill back to the newest
commit recovered) is printed.

The operator is checked against the accounts of a database, and the live one is gone: the
restore runs as a DR host would run it, against another running database of the platform
(here, a copy restored from the same repository before the crash). What `restore_backup`
does when pointed at the dead database is the last test: it should refuse.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import psycopg
import pytest

from tests.backups.pitr import OPERATOR, PitrPlatform, available, operator_code, pitr_platform

pytestmark = [
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
    pytest.mark.xdist_group(name="pitr-rpo"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]

ARCHIVE_TIMEOUT = 5  # seconds: PitrPlatform's archive_timeout (PITR_ARCHIVE_TIMEOUT)
# The archiver's own latency on top of archive_timeout: the checkpointer noticing the timeout,
# and pgBackRest compressing, encrypting and storing the segment (on a loaded two-core host).
MARGIN = 3.0


class NumberedWriter(threading.Thread):
    """Commits row n = 1, 2, 3... (autocommit) and notes the moment each commit returned."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.committed: dict[int, float] = {}
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stopped.is_set():
                    n += 1
                    conn.execute("INSERT INTO rpo_probe (n) VALUES (%s)", [n])
                    self.committed[n] = time.time()
                    time.sleep(0.02)
        except psycopg.Error as exc:  # the server went away under it: expected
            self.error = exc


def restore_latest(p: PitrPlatform, data_dir: str, *, check: bool = True, **env: str):
    return p.manage(
        "restore_backup",
        "--to-time",
        "latest",
        "--data-dir",
        data_dir,
        "--operator",
        OPERATOR,
        "--otp-token",
        operator_code(),
        check=check,
        timeout=900,
        **env,
    )


def restored_port(out: str) -> int:
    match = re.search(r"127\.0\.0\.1:(\d+)", out)
    assert match, out
    return int(match.group(1))


def kill_postmaster(p: PitrPlatform) -> float:
    """SIGKILL to the postmaster, as a crash; returns the moment. Its children exit on their
    own once they notice (they hold the data directory open until then)."""
    pid = int((p.data / "postmaster.pid").read_text().splitlines()[0])
    children = psutil.Process(pid).children()
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    psutil.wait_procs(children, timeout=60)
    return killed_at


@pytest.fixture(scope="module")
def platform() -> Iterator[PitrPlatform]:
    with pitr_platform() as p:
        yield p


def test_a_killed_primary_loses_at_most_archive_timeout_of_commits(platform: PitrPlatform) -> None:
    p = platform
    p.manage("pitr", "setup")
    p.manage("backup_now", "--physical", "full")
    # The DR host's database: the platform restored from the repository, running apart.
    dr = restore_latest(p, str(p.root / "restores" / "dr"))
    dr_port = restored_port(dr.stdout)
    p.psql(
        "CREATE TABLE rpo_probe (n integer PRIMARY KEY, "
        "written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )

    writer = NumberedWriter(p.url())
    writer.start()
    time.sleep(4 * ARCHIVE_TIMEOUT)
    killed_at = kill_postmaster(p)
    writer.stopped.set()
    writer.join(timeout=60)
    shutil.rmtree(p.data)
    assert len(writer.committed) > 100, len(writer.committed)

    # With the live cluster gone, a restore's plan falls back on what the archive holds.
    moment = datetime.datetime.fromtimestamp(killed_at - 2 * ARCHIVE_TIMEOUT, tz=datetime.UTC)
    label = p.shell(
        "from backups.services.recovery import recovery_plan, recovery_target_parse\n"
        f"print(recovery_plan(recovery_target_parse(to_time='{moment.isoformat()}'))['label'])"
    ).splitlines()[-1]
    assert label.endswith("F"), label

    # As a DR host would: the platform pointed at its other running database.
    done = restore_latest(
        p,
        str(p.root / "restores" / "recovered"),
        DATABASE_URL=p.url("schoolhouse_app", port=dr_port),
        DATABASE_MAINTENANCE_URL=p.url("schoolhouse", port=dr_port),
    )
    assert "Restored to latest" in done.stdout, done.stdout + done.stderr
    port = restored_port(done.stdout.split("The restored cluster runs in", 1)[1])
    newest, rows = map(int, p.psql("SELECT max(n), count(*) FROM rpo_probe", port=port).split("|"))
    assert rows == newest  # no hole: a prefix of the commits, as WAL replay gives

    rpo = killed_at - writer.committed[newest]
    lost = [n for n in writer.committed if n > newest]
    print(  # noqa: T201 - the measured figure
        f"RPO {rpo:.2f} s (archive_timeout {ARCHIVE_TIMEOUT} s): {newest} of "
        f"{len(writer.committed)} commits recovered, the last {len(lost)} lost"
    )
    owed = [n for n, at in writer.committed.items() if at < killed_at - ARCHIVE_TIMEOUT - MARGIN]
    assert max(owed) <= newest, (max(owed), newest)
    assert rpo <= ARCHIVE_TIMEOUT + MARGIN
    # The operator was checked against the DR database's accounts, and the restore recorded
    # there, where the platform now runs.
    assert "restore_to_moment" in p.psql(
        "SELECT string_agg(action, ',') FROM audit_auditevent", port=dr_port
    )


def test_with_the_live_database_gone_a_restore_is_refused_not_run_unchecked(
    platform: PitrPlatform,
) -> None:
    assert not platform.data.exists()  # the crash of the test above
    refused = restore_latest(platform, str(platform.root / "restores" / "refused"), check=False)
    assert refused.returncode != 0
    assert "recover_server" in refused.stderr, refused.stderr
    assert not (platform.root / "restores" / "refused" / "PG_VERSION").exists()
