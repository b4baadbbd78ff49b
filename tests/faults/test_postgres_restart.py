"""PostgreSQL restarted (`pg_ctl restart -m fast`) while staff requests flow through gunicorn
and its connection pool: errors only for requests caught by the restart, recovery within
seconds of the server accepting connections again, and every committed write still there.

The cluster is our own (initdb in a temporary directory); the shared server is never touched.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from tests.faults.conftest import StaffClient, running_gunicorn, wait_for
from tests.helpers import REPO, subprocess_env

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.xdist_group("faults")]

PASSWORD = "fault-demo-password-123"
THREADS = 4
# After `pg_ctl restart` returns (the server accepts connections), every request that starts
# later than this must succeed.
RECOVERY_SECONDS = 5.0


@dataclass
class Outcome:
    started: float
    ended: float
    what: str
    ok: bool
    detail: str = ""
    write: tuple[int, str, str] | None = None  # (section id, date, status) when a write


def seed(cluster, tmp_path) -> None:
    cluster.psql("postgres", "CREATE DATABASE schoolhouse")
    env = subprocess_env(
        DATABASE_URL=cluster.url("schoolhouse"),
        DB_POOL="false",
        SCHOOLHOUSE_TESTING="true",
        DEMO_PASSWORD=PASSWORD,
        SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
    )
    python = str(REPO / ".venv" / "bin" / "python")
    for args in (
        ["migrate", "-v", "0"],
        ["seed_demo", "--schools", "1", "--students", "24", "--attendance-days", "1"],
    ):
        subprocess.run([python, "manage.py", *args], cwd=REPO, env=env, check=True, timeout=300)


def rows(cluster, sql: str) -> list[list[str]]:
    out = cluster.psql("schoolhouse", sql)
    return [line.split("|") for line in out.splitlines() if line]


def test_requests_recover_within_seconds_of_a_postgres_restart(throwaway_postgres, tmp_path):
    cluster = throwaway_postgres
    seed(cluster, tmp_path)
    code, school_name = rows(cluster, "SELECT code, name FROM students_school")[0]
    rosters: dict[int, list[int]] = {}
    for section, student in rows(
        cluster, "SELECT section_id, student_id FROM students_enrollment ORDER BY 1, 2"
    ):
        rosters.setdefault(int(section), []).append(int(student))
    (earliest,) = rows(cluster, "SELECT max(started_on) FROM students_enrollment")[0]
    pupil = next(iter(rosters.values()))[0]
    # Attendance the seed did not write: one (class, day) per write, so each committed write
    # can be found again afterwards.
    today = datetime.date.today()
    days = [
        today - datetime.timedelta(days=n)
        for n in range(3, 200)
        if today - datetime.timedelta(days=n) >= datetime.date.fromisoformat(earliest)
    ]
    slots = iter([(section, day) for day in days for section in rosters])
    slot_lock = threading.Lock()

    with running_gunicorn(
        tmp_path / "gunicorn.log",
        DATABASE_URL=cluster.url("schoolhouse"),
        DB_POOL="true",
        DB_POOL_TIMEOUT="10",
        SCHOOLHOUSE_VAR_DIR=str(tmp_path / "var"),
        REDIS_URL="",  # the file cache of the embedded mode: this test is about PostgreSQL
        CELERY_BROKER_URL="",
        CELERY_RESULT_BACKEND="",
    ) as base:
        clients = []
        for _ in range(THREADS):
            staff = StaffClient(base, timeout=30)
            staff.login(f"registrar-{code}", PASSWORD)
            clients.append(staff)
        outcomes: list[Outcome] = []
        stop = threading.Event()

        def record(what: str, call, check, write=None) -> None:
            started = time.monotonic()
            try:
                answer = call()
                ok, detail = check(answer), f"{answer.status_code}"
            except requests.RequestException as exc:
                ok, detail = False, type(exc).__name__
            outcomes.append(Outcome(started, time.monotonic(), what, ok, detail, write))

        def stream(staff: StaffClient) -> None:
            status = itertools.cycle(["present", "absent", "late", "excused"])
            while not stop.is_set():
                record(
                    "dashboard",
                    lambda: staff.get("/dashboard/"),
                    lambda a: a.status_code == 200 and school_name in a.text,
                )
                record(
                    "profile",
                    lambda: staff.get(f"/students/{pupil}/"),
                    lambda a: a.status_code == 200,
                )
                with slot_lock:
                    slot = next(slots, None)
                if slot is None:  # every (class, day) written once: reads only from here on
                    continue
                section, day = slot
                mark = next(status)
                record(
                    "attendance",
                    functools.partial(
                        staff.post,
                        f"/classes/{section}/attendance/?date={day}",
                        {f"status_{s}": mark for s in rosters[section]},
                    ),
                    lambda a: a.status_code == 302,
                    write=(section, day.isoformat(), mark),
                )
                time.sleep(0.02)

        threads = [threading.Thread(target=stream, args=(c,), daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        # Counted, not timed, so a busy CI machine gets the same test, only slower.
        wait_for(lambda: sum(o.ok for o in outcomes) >= 20, timeout=60, what="steady traffic")
        restart_began = time.monotonic()
        cluster.restart()
        accepting = time.monotonic()
        window_end = accepting + RECOVERY_SECONDS
        wait_for(
            lambda: sum(o.started > window_end for o in outcomes) >= 20,
            timeout=60 + RECOVERY_SECONDS,
            what="traffic after the restart",
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    failed = [o for o in outcomes if not o.ok]
    window = (restart_began, accepting + RECOVERY_SECONDS)
    report = "\n".join(
        f"{o.what} {o.detail} started {o.started - restart_began:+.2f}s "
        f"ended {o.ended - restart_began:+.2f}s"
        for o in failed
    )
    # Requests flowed before, and plenty of them after the restart.
    assert sum(o.ok and o.ended < restart_began for o in outcomes) >= 20
    after = [o for o in outcomes if o.started > window[1]]
    assert len(after) >= 20 and all(o.ok for o in after), report
    # Every error belongs to a request caught by the restart window, and there are few.
    assert all(o.ended >= window[0] and o.started <= window[1] for o in failed), report
    assert len(failed) <= 4 * THREADS, report
    recovered = max((o.ended for o in failed), default=accepting) - accepting
    assert recovered <= RECOVERY_SECONDS, report
    print(
        f"\nrestart took {accepting - restart_began:.2f}s; {len(failed)} failed of "
        f"{len(outcomes)} requests; last failure {recovered:+.2f}s after PostgreSQL was back"
        f"\n{report}"
    )

    # No committed write was lost: every register answered with a redirect is in the table,
    # one row per pupil of the class, with the status that was sent.
    committed = [o.write for o in outcomes if o.write and o.ok]
    stored = {
        (int(section), day, status): int(count)
        for section, day, status, count in rows(
            cluster,
            "SELECT section_id, date, status, count(*) FROM students_attendancerecord "
            "GROUP BY 1, 2, 3",
        )
    }
    wrong = [w for w in committed if stored.get(w) != len(rosters[w[0]])]
    assert committed and not wrong, wrong
