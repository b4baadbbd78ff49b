"""The weekly restore drill, on a cluster of the test's own: drill marks taken while writers
keep changing both schools' records are proved exactly, school by school, in a throwaway
cluster; a WAL segment damaged or lost in the repository fails the drill loudly (a failed
receipt, an alert, exit code 1), never a pass."""

from __future__ import annotations

import http.server
import json
import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backups.pitr import PitrPlatform, available, pitr_platform

pytestmark = [
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
    pytest.mark.xdist_group(name="pitr-drill"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]

SEED = """
INSERT INTO students_academicyear (name, starts_on, ends_on, is_current, school_id)
SELECT '2026-27', '2026-09-01', '2027-06-30', true, id FROM students_school;
INSERT INTO students_gradelevel (name, "order", school_id)
SELECT 'Grade 5', 5, id FROM students_school;
INSERT INTO students_section (name, room, capacity, academic_year_id, grade_level_id, school_id)
SELECT '5' || chr(64 + g), 'R' || g, 30, y.id, l.id, s.id
FROM students_school s JOIN students_academicyear y ON y.school_id = s.id
JOIN students_gradelevel l ON l.school_id = s.id, generate_series(1, 10) g;
INSERT INTO students_student (school_id, student_number, first_name, middle_name, last_name,
  preferred_name, date_of_birth, gender, status, admitted_on, email, phone, address,
  medical_notes, notes, created_at, updated_at)
SELECT s.id, 'S' || g, 'First' || g, '', 'Last' || g, '', '2015-01-01', '', 'active',
  '2026-09-01', '', '', '1 Main St', '', '', now(), now()
FROM students_school s, generate_series(1, 300) g;
INSERT INTO students_attendancerecord (date, period, status, note, recorded_at, school_id,
  section_id, student_id)
SELECT d::date, 0, 'present', '', now(), st.school_id,
  (SELECT min(id) FROM students_section sec WHERE sec.school_id = st.school_id), st.id
FROM students_student st, generate_series('2026-09-01'::date, '2026-11-30'::date, '1 day') d
WHERE extract(isodow FROM d) < 6;
"""
SEGMENT = re.compile(r"^([0-9A-F]{24})-[0-9a-f]{40}\.zst$")


@pytest.fixture(scope="module")
def platform() -> Iterator[PitrPlatform]:
    with pitr_platform() as p:
        yield p


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def alerts(platform: PitrPlatform) -> Iterator[list[dict[str, Any]]]:
    """Alerts the platform's commands send, as the webhook on loopback receives them."""
    received: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    platform.extra_env["MONITORING_ALERT_WEBHOOK_URL"] = (
        f"http://127.0.0.1:{server.server_port}/hook"
    )
    yield received
    server.shutdown()
    server.server_close()


class Writers:
    """Threads committing small transactions that insert, update and delete both schools'
    records as fast as they can, until stopped: a school day at its busiest."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.stop = threading.Event()
        self.commits = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._work, args=(k,)) for k in range(threads)]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _work(self, k: int) -> None:
        rng = random.Random(k)  # noqa: S311 - test data
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                n = 0
                while not self.stop.is_set():
                    n += 1
                    with conn.transaction():
                        conn.execute(
                            "UPDATE students_attendancerecord SET status = %s, "
                            "recorded_at = clock_timestamp() WHERE id = "
                            "(SELECT min(id) FROM students_attendancerecord) + %s",
                            [rng.choice(["absent", "late", "present"]), rng.randint(0, 30000)],
                        )
                        conn.execute(
                            "INSERT INTO students_student (school_id, student_number, "
                            "first_name, middle_name, last_name, preferred_name, date_of_birth, "
                            "gender, status, admitted_on, email, phone, address, medical_notes, "
                            "notes, created_at, updated_at) SELECT id, %s, 'W', '', 'W', '', "
                            "'2015-01-01', '', 'active', '2026-09-01', '', '', '', '', '', "
                            "clock_timestamp(), clock_timestamp() FROM students_school "
                            "WHERE code = %s",
                            [f"W{k}-{n}", rng.choice(["NORTH", "SOUTH"])],
                        )
                        if n % 5 == 0:
                            conn.execute(
                                "DELETE FROM students_student WHERE student_number = %s",
                                [f"W{k}-{n - 2}"],
                            )
                    self.commits += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)


def shell_json(p: PitrPlatform, code: str) -> Any:
    return json.loads(p.shell(code).splitlines()[-1])


def receipts(p: PitrPlatform, drill: str) -> list[dict[str, Any]]:
    return shell_json(
        p,
        "import json; from django.db.models import F; from backups.models import DrillReceipt\n"
        f"rows = DrillReceipt.objects.filter(drill='{drill}')"
        ".order_by(F('school_id').asc(nulls_first=True))\n"
        "print(json.dumps([dict(school=r.school_id, name=r.school_name, result=r.result, "
        "point=r.restore_point, target=r.target_time.isoformat() if r.target_time else None, "
        "loss=r.data_loss_seconds, restore=r.restore_seconds, lag=r.archive_lag_seconds, "
        "tables=r.tables, rows=r.rows, details=r.details) for r in rows]))",
    )


def drill_health(p: PitrPlatform) -> dict[str, Any]:
    return shell_json(
        p,
        "import json; from monitoring.checks import health_report\n"
        "o = health_report().outcome('pitr_drill')\n"
        "print(json.dumps(dict(state=o.state, message=o.message)))",
    )


def mark(p: PitrPlatform) -> str:
    out = p.manage("pitr", "mark").stdout
    match = re.search(r"Drill mark (drill-\S+) at", out)
    assert match, out
    return match.group(1)


def drill_name(out: str) -> str:
    match = re.search(r"Drill (drill-\d{8}T\d{6}Z)", out)
    assert match, out
    return match.group(1)


def segments(p: PitrPlatform) -> dict[str, Path]:
    archive = p.root / "repo" / "archive" / "schoolhouse"
    found = {}
    for path in archive.rglob("*.zst"):
        if match := SEGMENT.match(path.name):
            found[match.group(1)] = path
    return dict(sorted(found.items()))


def segment_on_the_way(p: PitrPlatform, mark_name: str) -> tuple[str, Path]:
    """A WAL segment a restore to the mark must replay: after the backup's first, no later
    than the mark's."""
    wal_file = shell_json(
        p,
        "import json; from backups.models import DrillMark\n"
        f"print(json.dumps(DrillMark.objects.get(name='{mark_name}').wal_file))",
    )
    start = shell_json(
        p,
        "import json; from backups.models import BackupRun\n"
        "print(json.dumps(BackupRun.objects.physical().get().wal_start))",
    )
    between = [(name, path) for name, path in segments(p).items() if start < name <= wal_file]
    assert between, (start, wal_file)
    return between[len(between) // 2]


def test_the_drill_proves_marks_taken_under_writes_school_by_school(
    platform: PitrPlatform,
) -> None:
    platform.manage("pitr", "setup")
    platform.manage("backup_now", "--physical", "full")
    platform.psql(SEED)
    with Writers(platform.url()) as writers:
        time.sleep(2)
        marks = [mark(platform)]
        time.sleep(2)
        marks.append(mark(platform))
        time.sleep(2)  # more writes after the last mark: the live records move on
    assert not writers.errors, writers.errors
    assert writers.commits > 100, writers.commits
    # How long the writers waited on a mark's locks (the fingerprint is read after them).
    locks = shell_json(
        platform,
        "import json; from backups.models import DrillMark\n"
        "print(json.dumps([[m.name, m.lock_seconds, m.fingerprint_seconds] "
        "for m in DrillMark.objects.ready()]))",
    )
    print(f"marks under {writers.commits} writer commits: {locks}")  # noqa: T201
    assert all(lock < 1.0 for _name, lock, _read in locks), locks

    done = platform.manage("pitr", "drill", "--mark", marks[0], timeout=900)
    assert "North: passed" in done.stdout and "South: passed" in done.stdout, done.stdout
    drill = drill_name(done.stdout)
    print(done.stdout.splitlines()[-1])  # noqa: T201 - the measured figures
    rows = receipts(platform, drill)
    district, *schools = rows
    assert district["school"] is None and district["result"] == "passed"
    assert district["details"]["repositories"] == {"repo1": "verified"}
    assert sorted(s["name"] for s in schools) == ["North", "South"]
    for school in schools:
        assert school["result"] == "passed" and school["point"] == marks[0]
        assert school["tables"] >= 20 and school["rows"] > 300 * 60
        assert 0 <= school["loss"] < 1.0  # recovery reached the mark itself
        assert school["restore"] > 0 and school["lag"] is not None
    # The drill compared with the mark, not with now: the writers went on after it.
    north_then = shell_json(
        platform,
        "import json; from backups.models import DrillMark\n"
        f"m = DrillMark.objects.get(name='{marks[0]}')\n"
        "north = next(k for k, v in m.fingerprint['names'].items() if v == 'North')\n"
        "print(json.dumps(m.fingerprint['schools'][north]['students_student'][0]))",
    )
    north_now = int(
        platform.psql(
            "SELECT count(*) FROM students_student st JOIN students_school s "
            "ON s.id = st.school_id WHERE s.code = 'NORTH'"
        )
    )
    assert north_now != north_then
    # The throwaway cluster is gone, log and all.
    assert [p.name for p in (platform.root / "restores").iterdir()] == []
    health = drill_health(platform)
    assert health["state"] == "ok" and f"drill {drill} passed" in health["message"], health

    # The weekly task: a random mark of the last day.
    result = shell_json(
        platform,
        "import json; from backups.tasks import pitr_drill\n"
        "print(json.dumps(pitr_drill.delay().get()))",
    )
    assert result["passed"] is True, result
    picked = receipts(platform, result["drill"])[0]["point"]
    assert picked in marks


def test_a_damaged_or_missing_wal_segment_fails_the_drill_loudly(
    platform: PitrPlatform, alerts: list[dict[str, Any]]
) -> None:
    platform.psql("UPDATE students_student SET notes = 'after' WHERE student_number = 'S1'")
    target = mark(platform)
    name, path = segment_on_the_way(platform, target)
    kept = platform.root / f"{path.name}.kept"
    shutil.copy2(path, kept)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))

    done = platform.manage("pitr", "drill", "--mark", target, check=False, timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED" in done.stderr and name in done.stderr, done.stderr
    drill = drill_name(done.stdout + done.stderr)
    district = receipts(platform, drill)[0]
    assert district["result"] == "failed"
    assert any(name in problem for problem in district["details"]["repositories"]["repo1"])
    health = drill_health(platform)
    assert health["state"] == "failed" and f"drill {drill} failed" in health["message"]
    assert [a["alert"] for a in alerts] == ["pitr_drill_failed"]
    assert drill in alerts[0]["summary"] and name in alerts[0]["summary"]

    # The segment back, and another on the way lost instead.
    shutil.move(kept, path)
    name, path = segment_on_the_way(platform, target)
    path.unlink()
    done = platform.manage("pitr", "drill", "--mark", target, check=False, timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "WAL missing" in done.stderr and "recovery ended before" in done.stderr, done.stderr
    drill = drill_name(done.stdout + done.stderr)
    district, *schools = receipts(platform, drill)
    assert district["result"] == "failed" and district["details"]["error"]
    assert schools and all(s["result"] == "failed" for s in schools)
    assert [a["alert"] for a in alerts] == ["pitr_drill_failed"] * 2
    # The failed restore's server log is kept for the operator; its data directory is not.
    left = [p for p in (platform.root / "restores").iterdir()]
    assert f"{drill}.log" in [p.name for p in left] and not any(p.is_dir() for p in left)
