"""The write load replayed against the cluster: a school morning's writes at a steady rate.

Each transaction is one of what teachers do at the busiest hour:
- a class register (70 %): the attendance of one section's enrolled students for one lesson
  (a new date and period: ~28 rows upserted, as `attendance_record_bulk` upserts);
- a correction (20 %): three students of an earlier register marked otherwise;
- marks entered (10 %): every grade of one assessment rescored.
Every transaction also writes one row of `bench_pitr_writes` (its sequence number and the
server's clock), and the client notes when each commit was acknowledged: a restore is then
checked against what was committed before its moment, and the data lost when the server is
killed is counted from the newest transaction recovered.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

LOG_TABLE = "bench_pitr_writes"
MIX = (("register", 0.7), ("correction", 0.2), ("marks", 0.1))


def log_table_create(conn: Any) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} (seq bigint PRIMARY KEY, kind text NOT NULL, "
        "rows integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )


@dataclass
class Section:
    id: int
    school_id: int
    students: list[int]
    assessments: list[int]


@dataclass
class WriteStats:
    started: float = 0.0  # epoch seconds
    ended: float = 0.0
    transactions: int = 0
    rows: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    late: int = 0  # transactions started more than a second behind schedule
    error: str = ""
    # (seq, acknowledged at, epoch seconds), in commit order.
    acks: list[tuple[int, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        seconds = max(self.ended - self.started, 1e-9)
        return {
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "seconds": round(seconds, 1),
            "transactions": self.transactions,
            "rows": self.rows,
            "by_kind": self.by_kind,
            "tps": round(self.transactions / seconds, 2),
            "rows_per_second": round(self.rows / seconds, 1),
            "late": self.late,
            "error": self.error,
        }

    def last_acked_before(self, moment: float) -> tuple[int, float] | None:
        before = [ack for ack in self.acks if ack[1] <= moment]
        return before[-1] if before else None

    def ack_of(self, seq: int) -> float | None:
        for number, at in self.acks:
            if number == seq:
                return at
        return None


def _row(conn: Any, query: str) -> tuple[Any, ...]:
    row = conn.execute(query).fetchone()
    assert row is not None
    return tuple(row)


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat(
        timespec="milliseconds"
    )


class WriteLoad:
    """Runs `rate` transactions a second for `seconds` on one connection (a thread of the
    benchmark's process: the transactions are small, the schedule is what matters), or
    until stopped or the server goes away."""

    def __init__(self, url: str, *, rate: float, seed: int = 18) -> None:
        self.url = url
        self.rate = rate
        self.random = random.Random(seed)
        self.sections: list[Section] = []
        self.assessed: list[Section] = []
        self.past_dates: list[datetime.date] = []
        self.next_seq = 1
        self.next_register = 0
        self.first_date = datetime.date(2026, 12, 3)
        self.periods = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = WriteStats()

    def prepare(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            log_table_create(conn)
            self.next_seq = int(_row(conn, f"SELECT coalesce(max(seq), 0) + 1 FROM {LOG_TABLE}")[0])
            rows = conn.execute(
                "SELECT e.section_id, e.school_id, array_agg(e.student_id ORDER BY e.student_id) "
                "FROM students_enrollment e WHERE e.ended_on IS NULL "
                "GROUP BY e.section_id, e.school_id ORDER BY e.section_id"
            ).fetchall()
            assessments: dict[int, list[int]] = {}
            for section_id, assessment_id in conn.execute(
                "SELECT section_id, id FROM students_assessment ORDER BY id"
            ).fetchall():
                assessments.setdefault(section_id, []).append(assessment_id)
            last_date, periods = _row(
                conn, "SELECT max(date), max(period) + 1 FROM students_attendancerecord"
            )
            self.past_dates = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT date FROM students_attendancerecord WHERE date < %s "
                    "ORDER BY 1",
                    [self.first_date],
                ).fetchall()
            ]
        self.sections = [
            Section(
                id=s, school_id=school, students=list(students), assessments=assessments.get(s, [])
            )
            for s, school, students in rows
        ]
        self.random.shuffle(self.sections)
        self.assessed = [s for s in self.sections if s.assessments]
        self.first_date = max(self.first_date, last_date + datetime.timedelta(days=1))
        self.periods = max(1, int(periods or 1))

    # --- the transactions ---------------------------------------------------------------
    def _register(self, cur: Any) -> int:
        # Each register is a new lesson: sections in turn, then the next period, then the
        # next school day.
        n = self.next_register
        self.next_register += 1
        section = self.sections[n % len(self.sections)]
        lesson = n // len(self.sections)
        period = lesson % self.periods
        day = self.first_date + datetime.timedelta(days=lesson // self.periods)
        statuses = [self._status() for _ in section.students]
        cur.execute(
            "INSERT INTO students_attendancerecord (date, period, status, note, recorded_at, "
            "school_id, section_id, student_id) "
            "SELECT %s, %s, s.status, '', now(), %s, %s, s.student "
            "FROM unnest(%s::bigint[], %s::text[]) AS s(student, status) "
            "ON CONFLICT (student_id, date, period) DO UPDATE "
            "SET status = excluded.status, recorded_at = excluded.recorded_at",
            [day, period, section.school_id, section.id, section.students, statuses],
        )
        return int(cur.rowcount)

    def _status(self) -> str:
        roll = self.random.random()
        return "present" if roll < 0.93 else ("absent" if roll < 0.98 else "late")

    def _correction(self, cur: Any) -> int:
        if not self.past_dates:
            return 0
        section = self.random.choice(self.sections)
        students = self.random.sample(section.students, min(3, len(section.students)))
        day = self.random.choice(self.past_dates)
        cur.execute(
            "UPDATE students_attendancerecord SET status = %s, note = 'corrected', "
            "recorded_at = now() WHERE section_id = %s AND student_id = ANY(%s) AND date = %s",
            [
                self.random.choice(["present", "absent", "late", "excused"]),
                section.id,
                students,
                day,
            ],
        )
        return int(cur.rowcount)

    def _marks(self, cur: Any) -> int:
        if not self.assessed:
            return 0
        section = self.random.choice(self.assessed)
        assessment = self.random.choice(section.assessments)
        cur.execute(
            "UPDATE students_grade SET score = round((random() * max_score)::numeric, 2), "
            "updated_at = now() WHERE assessment_id = %s",
            [assessment],
        )
        return int(cur.rowcount)

    def _one(self, conn: Any) -> None:
        roll, kind = self.random.random(), MIX[-1][0]
        for name, share in MIX:
            if roll < share:
                kind = name
                break
            roll -= share
        seq = self.next_seq
        with conn.transaction(), conn.cursor() as cur:
            rows = {
                "register": self._register,
                "correction": self._correction,
                "marks": self._marks,
            }[kind](cur)
            cur.execute(
                f"INSERT INTO {LOG_TABLE} (seq, kind, rows) VALUES (%s, %s, %s)", [seq, kind, rows]
            )
        acked = time.time()
        self.next_seq += 1
        self.stats.acks.append((seq, acked))
        self.stats.transactions += 1
        self.stats.rows += rows
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1

    def run(self, seconds: float) -> WriteStats:
        """Blocking: the load for `seconds` at the steady rate."""
        import psycopg

        self.stats = WriteStats(started=time.time())
        interval = 1.0 / self.rate
        clock = time.monotonic()
        deadline = clock + seconds
        i = 0
        try:
            with psycopg.connect(
                self.url, autocommit=True, application_name="bench-pitr-writes"
            ) as conn:
                while not self._stop.is_set():
                    due = clock + i * interval
                    now = time.monotonic()
                    if due >= deadline:
                        break
                    if due > now:
                        time.sleep(due - now)
                    elif now - due > 1.0:
                        self.stats.late += 1
                    self._one(conn)
                    i += 1
        except psycopg.Error as exc:
            # The server went away (the RPO step kills it): what was acknowledged stands.
            self.stats.error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        self.stats.ended = time.time()
        return self.stats

    def start(self, seconds: float) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(seconds,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
