"""The restore drill: proof, every week, that the WAL archive brings back exactly what the
live database held at a moment, school by school.

Marks. A few times a day (beat, at a random minute) `drill_mark_create` writes a named
restore point and fingerprints every school's records as they stood at that very place in
the WAL: per school-owned table and per school, the row count and an md5 of the rows in
primary-key order. The drill (`pitr_drill_run`, weekly) picks one of the last day's marks at
random, restores the repository to it in a throwaway cluster, fingerprints the same tables
there, and writes a receipt per school (and one for the district) of what matched. It then
has pgBackRest verify every repository (`repository_verify`): a restore reads only the WAL
on its way to its target, and a segment damaged or lost elsewhere would break the next one.

Why the comparison is exact. A fingerprint read in one snapshot and a restore point written
a moment later describe the same state only if no transaction that changed the fingerprinted
tables committed in between, and only if every transaction the snapshot saw committed before
the restore point in the WAL (a commit is written to the WAL a moment before it becomes
visible, so "in the WAL before the point" and "visible to the snapshot" are not the same
set). A mark therefore takes SHARE locks on every fingerprinted table first: they conflict
with the ROW EXCLUSIVE lock every INSERT, UPDATE and DELETE takes, so once granted, each
writer of those tables has finished (a transaction releases its locks only after its commit
is in the WAL and visible) and no new one can start. Under the locks the mark exports its
snapshot, a second session imports it (the fingerprint is read there later, at leisure),
and the restore point is written; then the locks go. Recovery to a named restore point
replays exactly the commits that precede it in the WAL, which for these tables are exactly
the commits the snapshot sees. Writers wait only for the milliseconds between the locks and
the restore point, never for the reading of the fingerprint; and the mark gives up on a lock
after PITR_DRILL_LOCK_TIMEOUT_MS (below PostgreSQL's deadlock_timeout, so a writer is never
the one aborted) and tries again a little later.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record

from .. import pgbackrest
from ..locking import backup_lock
from ..models import DrillMark, DrillReceipt, RestorePoint
from .alerts import backup_alert
from .physical import (
    archive_status,
    maintenance_connection,
    pitr_require,
    restore_point_name,
)
from .recovery import (
    RecoveryTarget,
    RestoredCluster,
    recovery_restore,
    recovery_stop,
)

logger = logging.getLogger(__name__)
Say = Callable[[str], None]

# Row text must not depend on the session: both sides are read with these settings.
SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)
WAL_NAME = re.compile(r"^[0-9A-F]{24}$")
# `pgbackrest verify --log-level-console=detail`: each run of consecutive WAL segments it
# found, per timeline; two runs on one timeline mean segments are missing between them.
VERIFY_RANGE = re.compile(r"archiveId: (\S+), wal start: ([0-9A-F]{24}), wal stop: ([0-9A-F]{24})")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ P\d+ +(\w+): (.*)$")
MARK_ATTEMPTS = 20
# Marks older than this go (with their restore point's row): the drill takes the last day's,
# and a week's worth lets a failed Sunday drill be re-run on Monday against the same marks.
MARKS_KEPT = datetime.timedelta(days=8)


class DrillFailed(RuntimeError):
    """A mark could not be made, or a drill could not get as far as a comparison."""


# --- what is fingerprinted -------------------------------------------------------------------
def fingerprint_tables() -> dict[str, dict[str, str]]:
    """Every school-owned table (the ones row-level security walls off) and the schools
    table itself: {table: {"pk": column, "school": column}}."""
    from students.row_security import school_columns, school_owned_models

    tables = {"students_school": {"pk": "id", "school": "id"}}
    for model in school_owned_models():
        pk = model._meta.pk
        assert pk is not None and pk.column  # noqa: S101 - every concrete model has one
        tables[model._meta.db_table] = {"pk": pk.column, "school": school_columns(model)[0]}
    return dict(sorted(tables.items()))


def _existing(cursor: Any, tables: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    cursor.execute(
        "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(quote_ident(t)) IS NOT NULL",
        [list(tables)],
    )
    present = {row[0] for row in cursor.fetchall()}
    return {table: columns for table, columns in tables.items() if table in present}


def _session(cursor: Any) -> None:
    for statement in SESSION_SETTINGS:
        cursor.execute(statement)


def _fingerprint(cursor: Any, tables: dict[str, dict[str, str]]) -> dict[str, dict[str, list[Any]]]:
    """{school id as text, "" for rows of no school: {table: [rows, md5]}}, one pass over
    each table. The md5 is of the rows' md5s in primary-key order (33 bytes a row in memory,
    not the rows themselves)."""
    from psycopg import sql

    schools: dict[str, dict[str, list[Any]]] = {}
    for table, columns in tables.items():
        cursor.execute(
            sql.SQL(
                "SELECT {school}, count(*), "
                "md5(string_agg(md5(t::text), '' ORDER BY t.{pk})) FROM {table} AS t GROUP BY 1"
            ).format(
                school=sql.Identifier(columns["school"]),
                pk=sql.Identifier(columns["pk"]),
                table=sql.Identifier(table),
            )
        )
        for school, rows, digest in cursor.fetchall():
            key = "" if school is None else str(school)
            schools.setdefault(key, {})[table] = [int(rows), digest]
    return schools


def _school_names(cursor: Any) -> dict[str, str]:
    cursor.execute("SELECT id, name FROM students_school")
    return {str(pk): name for pk, name in cursor.fetchall()}


# --- marks -----------------------------------------------------------------------------------
def drill_mark_create(*, actor: Actor = None, say: Say = lambda message: None) -> DrillMark:
    """Write a restore point named `drill-<time>` and record every school's fingerprint at
    it (the module's docstring says why it is exact). Retries while writes in flight hold
    the tables longer than PITR_DRILL_LOCK_TIMEOUT_MS; DrillFailed after that."""
    import psycopg

    pitr_require()
    last_error = ""
    for attempt in range(1, MARK_ATTEMPTS + 1):
        try:
            mark = _mark_once()
        except psycopg.errors.LockNotAvailable as exc:
            last_error = str(exc).strip()
            say(f"attempt {attempt}: a write in flight held a table; trying again")
            time.sleep(random.uniform(0.2, 2.0))  # noqa: S311 - spreading retries, not secrets
            continue
        say(
            f"mark {mark.name} at {mark.lsn}: writes waited {(mark.lock_seconds or 0) * 1000:.1f} "
            f"ms, fingerprint read in {mark.fingerprint_seconds or 0:.2f} s"
        )
        _marks_prune(before=mark.created_at - MARKS_KEPT if mark.created_at else timezone.now())
        audit_record(
            actor=actor,
            action="pitr_drill_mark",
            target=mark,
            changes={"name": mark.name, "lsn": mark.lsn, "lock_seconds": mark.lock_seconds},
        )
        return mark
    raise DrillFailed(
        f"No drill mark after {MARK_ATTEMPTS} attempts: the school tables were never free of "
        f"writes for {settings.PITR_DRILL_LOCK_TIMEOUT_MS} ms ({last_error})."
    )


@transaction.atomic
def _marks_prune(*, before: datetime.datetime) -> int:
    old = list(DrillMark.objects.filter(created_at__lt=before).values_list("name", flat=True))
    RestorePoint.objects.filter(name__in=old).delete()
    return DrillMark.objects.filter(name__in=old).delete()[0]


def _mark_once() -> DrillMark:
    from psycopg import sql

    name = restore_point_name("drill")
    with maintenance_connection() as locker, maintenance_connection() as reader:
        tables = _existing(locker, fingerprint_tables())
        _session(reader)
        locker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        # The locks must come before the snapshot, which a repeatable-read transaction takes
        # at its first query: nothing before LOCK may be one (SET and LOCK are not; a
        # `SELECT set_config(...)` would be, and would make the fingerprint inexact).
        locker.execute(
            sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{settings.PITR_DRILL_LOCK_TIMEOUT_MS}ms")
            )
        )
        clock = time.monotonic()
        locker.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            )
        )
        locker.execute("SELECT pg_export_snapshot()")
        snapshot = locker.fetchone()[0]
        # The last commit before the restore point (it changes nothing): the restored
        # cluster's last replayed commit then measures how close recovery came to the mark.
        reader.execute("SELECT pg_current_xact_id()")
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        reader.execute("SELECT 1")  # the snapshot is the reader's from here on
        locker.execute(
            "SELECT lsn::text, pg_walfile_name(lsn), clock_timestamp() "
            "FROM pg_create_restore_point(%s) AS lsn",
            [name],
        )
        lsn, wal_file, created_at = locker.fetchone()
        locker.execute("COMMIT")
        lock_seconds = time.monotonic() - clock
        clock = time.monotonic()
        schools = _fingerprint(reader, tables)
        names = _school_names(reader)
        reader.execute("COMMIT")
        fingerprint_seconds = time.monotonic() - clock
    with transaction.atomic():
        RestorePoint.objects.create(
            name=name,
            reason=RestorePoint.Reason.DRILL,
            description="Drill mark: every school's records fingerprinted at this point.",
            created_at=created_at,
            lsn=lsn,
            wal_file=wal_file,
        )
        return DrillMark.objects.create(
            name=name,
            created_at=created_at,
            lsn=lsn,
            wal_file=wal_file,
            lock_seconds=round(lock_seconds, 4),
            fingerprint_seconds=round(fingerprint_seconds, 3),
            fingerprint={"tables": tables, "schools": schools, "names": names},
        )


# --- the repositories, read end to end ---------------------------------------------------------
def repository_verify() -> dict[str, list[str]]:
    """`pgbackrest verify` of every repository: each WAL segment and backup file read back
    and checked against its checksum, and the archived WAL checked for gaps. Returns, per
    repository, what is wrong (an empty list: nothing)."""
    found: dict[str, list[str]] = {}
    for repo in pgbackrest.repos():
        try:
            out = pgbackrest.run(
                "verify",
                f"--repo={repo.index}",
                "--output=text",
                "--verbose",
                "--log-level-console=detail",
                timeout=6 * 3600,
            )
        except pgbackrest.PgBackRestError as exc:
            found[repo.name] = [f"pgbackrest verify failed: {exc}"]
            continue
        found[repo.name] = _verify_problems(out)
    return found


def _verify_problems(out: str) -> list[str]:
    problems: list[str] = []
    report = [
        line
        for line in out.splitlines()
        if line.strip() and not LOG_LINE.match(line) and not line.startswith(" " * 20)
    ]
    status = next(
        (line.split(":", 1)[1].strip() for line in report if line.startswith("status:")), ""
    )
    if status != "ok":
        # The report's lines that count something wrong (not "missing: 0, ... other: 0").
        counted = [
            line.strip()
            for line in report
            if re.search(r"(?:missing|invalid|other): [1-9]", line)
            or re.search(r"\bstatus: (?!ok\b|valid\b)", line)
        ]
        problems.append("pgbackrest verify: " + ("; ".join(counted) or f"status {status!r}"))
    for line in out.splitlines():
        match = LOG_LINE.match(line)
        if match and match.group(1) in {"WARN", "ERROR", "INFO"}:
            text = match.group(2)
            if re.search(r"invalid|missing|does not match|duplicate", text):
                problems.append(text)
    last: dict[tuple[str, str], str] = {}
    for archive_id, start, stop in VERIFY_RANGE.findall(out):
        key = (archive_id, start[:8])  # a timeline
        if key in last:
            problems.append(f"WAL missing in {archive_id} between {last[key]} and {start}")
        last[key] = stop
    return problems


# --- the drill -------------------------------------------------------------------------------
@dataclass
class DrillOutcome:
    drill: str
    mark: DrillMark | None
    receipts: list[DrillReceipt] = field(default_factory=list)
    error: str = ""
    # pgbackrest verify: per repository, what is wrong.
    repositories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.receipts) and all(r.passed for r in self.receipts)

    @property
    def reason(self) -> str:
        """Why it failed, in a few lines ("" when it passed)."""
        if self.passed:
            return ""
        lines = [self.error] if self.error else []
        district = self.district
        failed = district.details.get("failed_schools") if district else None
        if failed:
            lines.append("restored records differ for: " + ", ".join(failed))
        for name, wrong in self.repositories.items():
            lines += [f"{name}: {problem}" for problem in wrong]
        return "\n".join(lines) or "failed"

    @property
    def district(self) -> DrillReceipt | None:
        return next((r for r in self.receipts if r.school_id is None), None)


def drill_mark_choose(*, name: str = "", hours: float | None = None) -> DrillMark | None:
    """The mark named `name`, or one drawn at random from the last `hours`
    (PITR_DRILL_WINDOW_HOURS) of marks; None when there is none."""
    marks = DrillMark.objects.ready()
    if name:
        return marks.filter(name=name).first()
    since = timezone.now() - datetime.timedelta(hours=hours or settings.PITR_DRILL_WINDOW_HOURS)
    recent = list(marks.filter(created_at__gte=since))
    return random.choice(recent) if recent else None  # noqa: S311 - a drill's pick, not a secret


def pitr_drill_run(
    *,
    mark_name: str = "",
    actor: Actor = None,
    say: Say = lambda message: None,
    progress: Callable[[float], None] | None = None,
) -> DrillOutcome:
    """Restore the repository to a drill mark (a random one of the last day, or
    `mark_name`; a new one when the day has none) in a throwaway cluster, compare every
    school's fingerprint with the mark's, write the receipts, and alert when anything
    differs or the restore fails. The cluster is always stopped and deleted (its log is
    kept when the drill fails). Raises BackupBusy when another drill runs."""
    pitr_require()
    with backup_lock("pitr-drill", wait_seconds=10):
        _sweep(say=say)
        started = timezone.now()
        outcome = DrillOutcome(drill=f"drill-{started:%Y%m%dT%H%M%SZ}", mark=None)
        try:
            outcome.mark = drill_mark_choose(name=mark_name)
            if outcome.mark is None and mark_name:
                raise DrillFailed(f"There is no drill mark named {mark_name!r}.")
            if outcome.mark is None:
                say("no drill mark in the last day: making one now")
                outcome.mark = drill_mark_create(actor=actor, say=say)
        except DrillFailed as exc:
            outcome.error = str(exc)
        if outcome.mark is not None:
            _drill(outcome, started=started, actor=actor, say=say, progress=progress)
        else:
            _write_receipts(outcome, started=started, found=None, cluster=None, lag=None)
        _tell(outcome, actor=actor)
        return outcome


def _drill(
    outcome: DrillOutcome,
    *,
    started: datetime.datetime,
    actor: Actor,
    say: Say,
    progress: Callable[[float], None] | None,
) -> None:
    mark = outcome.mark
    assert mark is not None  # noqa: S101 - the caller checked
    lag: float | None = None
    with contextlib.suppress(Exception):
        lag = archive_status().last_archived_age
    data_dir = Path(settings.PITR_RESTORE_DIR) / outcome.drill
    cluster: RestoredCluster | None = None
    found: dict[str, dict[str, list[Any]]] | None = None
    target = RecoveryTarget(kind="name", name=mark.name)
    say(f"drill {outcome.drill}: restoring to mark {mark.name} ({mark.created_at})")
    try:
        _wait_archived(mark, say=say)
        cluster = recovery_restore(
            target=target, data_dir=data_dir, actor=actor, say=say, progress=progress
        )
        say(f"restored in {cluster.seconds} s; fingerprinting {cluster.port}")
        with _restored_cursor(cluster) as cursor:
            # A table the restored database lacks then differs for every school with rows in it.
            found = _fingerprint(cursor, _existing(cursor, mark.fingerprint["tables"]))
    except Exception as exc:  # whatever stops a drill fails it, with a receipt and an alert
        outcome.error = str(exc).strip() or type(exc).__name__
        logger.exception("restore drill %s failed", outcome.drill)
    finally:
        _discard(cluster, data_dir, target=target, keep_log=found is None)
    say("verifying every repository (each WAL segment and backup file against its checksum)")
    outcome.repositories = repository_verify()
    if found is None and not outcome.error:  # pragma: no cover - every path above sets one
        outcome.error = "the restored cluster was not read"
    if found is None:
        log = data_dir.parent / f"{data_dir.name}.log"
        if log.exists():
            outcome.error += f"\n(the restored cluster's log is kept at {log})"
    _write_receipts(outcome, started=started, found=found, cluster=cluster, lag=lag)


def _sweep(*, say: Say) -> None:
    """Clusters of drills whose worker died mid-way (this one holds the drill lock, so no
    other drill is running): stopped and deleted. Their logs stay."""
    root = Path(settings.PITR_RESTORE_DIR)
    if not root.is_dir():
        return
    for data_dir in sorted(root.glob("drill-*")):
        if not data_dir.is_dir() or data_dir.name.endswith(".sock"):
            continue
        say(f"removing the cluster of an unfinished drill: {data_dir}")
        target = RecoveryTarget(kind="name", name="")
        _discard(None, data_dir, target=target, keep_log=True)


def _wait_archived(mark: DrillMark, *, say: Say) -> None:
    """The restore point's WAL segment must be in the repository before a restore can reach
    it; a mark made minutes ago may still be in the live cluster's current segment."""
    deadline = time.monotonic() + 2 * settings.PITR_ARCHIVE_TIMEOUT + 60
    switched = False
    while True:
        status = archive_status()
        last = status.last_archived_wal
        if WAL_NAME.match(last) and last >= mark.wal_file:
            return
        if not switched:
            say(f"waiting for WAL {mark.wal_file} to be archived")
            with maintenance_connection() as cursor:
                cursor.execute("SELECT pg_switch_wal()")
            switched = True
        if time.monotonic() > deadline:
            raise DrillFailed(
                f"The mark's WAL segment {mark.wal_file} was not archived in time (last "
                f"archived: {last or 'none'}; {status.failed_count} failed attempts)."
            )
        time.sleep(0.5)


@contextlib.contextmanager
def _restored_cursor(cluster: RestoredCluster) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(
        host=str(cluster.socket_dir),
        port=cluster.port,
        dbname=str(settings.DATABASES["default"]["NAME"]),
        user=settings.PITR_PG_USER,
        autocommit=True,
        connect_timeout=10,
        application_name="schoolhouse-drill",
    ) as conn:
        cursor = conn.cursor()
        _session(cursor)
        yield cursor


def _discard(
    cluster: RestoredCluster | None, data_dir: Path, *, target: RecoveryTarget, keep_log: bool
) -> None:
    """Stop the throwaway cluster (if it runs) and delete it."""
    if cluster is None:  # a restore that failed half-way: stop whatever it started
        cluster = RestoredCluster(
            data_dir=data_dir,
            port=0,
            socket_dir=data_dir.parent / f"{data_dir.name}.sock",
            target=target,
            backup_label="",
            started_at=timezone.now(),
        )
    if (cluster.data_dir / "postmaster.pid").exists() or cluster.port:
        with contextlib.suppress(Exception):
            recovery_stop(cluster)
    shutil.rmtree(cluster.data_dir, ignore_errors=True)
    shutil.rmtree(cluster.socket_dir, ignore_errors=True)
    if not keep_log:
        cluster.log.unlink(missing_ok=True)


def _compare(
    expected: dict[str, list[Any]], found: dict[str, list[Any]], tables: list[str]
) -> dict[str, dict[str, Any]]:
    differ: dict[str, dict[str, Any]] = {}
    for table in tables:
        want = expected.get(table, [0, None])
        got = found.get(table, [0, None])
        if want != got:
            differ[table] = {"expected": want, "found": got}
    return differ


def _write_receipts(
    outcome: DrillOutcome,
    *,
    started: datetime.datetime,
    found: dict[str, dict[str, list[Any]]] | None,
    cluster: RestoredCluster | None,
    lag: float | None,
) -> None:
    mark = outcome.mark
    finished = timezone.now()
    common: dict[str, Any] = {
        "drill": outcome.drill,
        "restore_point": mark.name if mark else "",
        "target_time": mark.created_at if mark else None,
        "archive_lag_seconds": None if lag is None else round(lag, 1),
        "started_at": started,
        "finished_at": finished,
    }
    if cluster is not None:
        common["restore_seconds"] = cluster.seconds
        common["recovered_to"] = cluster.recovered_to
        if cluster.recovered_to and mark and mark.created_at:
            loss = (mark.created_at - cluster.recovered_to).total_seconds()
            common["data_loss_seconds"] = round(loss, 3)
    receipts: list[DrillReceipt] = []
    failed_schools: list[str] = []
    district: dict[str, Any] = {}
    compared_rows = 0
    if mark is not None:
        tables = sorted(mark.fingerprint["tables"])
        expected: dict[str, dict[str, list[Any]]] = mark.fingerprint["schools"]
        names: dict[str, str] = mark.fingerprint.get("names", {})
        keys = sorted(set(expected) | set(found or {}) | set(names), key=lambda k: (k == "", k))
        for key in keys:
            rows = sum(n for n, _digest in expected.get(key, {}).values())
            compared_rows += rows
            if found is None:
                differ: dict[str, Any] = {}
                details: dict[str, Any] = {"error": "not compared: the drill failed"}
            else:
                differ = _compare(expected.get(key, {}), found.get(key, {}), tables)
                details = {"differ": differ} if differ else {}
            if key == "":  # rows that belong to no school (the district's audit entries)
                district = {"district_rows": rows, "district_differ": differ}
                if differ:
                    failed_schools.append("(no school)")
                continue
            failed = found is None or bool(differ)
            if failed and found is not None:
                failed_schools.append(names.get(key, key))
            receipts.append(
                DrillReceipt(
                    **common,
                    school_id=int(key),
                    school_name=names.get(key, ""),
                    result=DrillReceipt.Result.FAILED if failed else DrillReceipt.Result.PASSED,
                    tables=len(tables),
                    rows=rows,
                    details=details,
                )
            )
    damaged = {name: wrong for name, wrong in outcome.repositories.items() if wrong}
    passed = found is not None and not failed_schools and not outcome.error and not damaged
    summary: dict[str, Any] = {
        "schools": len(receipts),
        "failed_schools": failed_schools,
        **district,
    }
    if mark is not None:
        summary["mark_lock_seconds"] = mark.lock_seconds
    if cluster is not None:
        summary["backup"] = cluster.backup_label
    if outcome.repositories:
        summary["repositories"] = {
            name: wrong or "verified" for name, wrong in outcome.repositories.items()
        }
    if outcome.error:
        summary["error"] = outcome.error
    receipts.insert(
        0,
        DrillReceipt(
            **common,
            school_id=None,
            result=DrillReceipt.Result.PASSED if passed else DrillReceipt.Result.FAILED,
            tables=len(mark.fingerprint["tables"]) if mark else 0,
            rows=compared_rows,
            details=summary,
        ),
    )
    outcome.receipts = DrillReceipt.objects.bulk_create(receipts)


def _tell(outcome: DrillOutcome, *, actor: Actor) -> None:
    district = outcome.district
    assert district is not None  # noqa: S101 - _write_receipts always writes it
    audit_record(
        actor=actor,
        action="pitr_drill",
        target=district,
        changes={
            "drill": outcome.drill,
            "mark": district.restore_point,
            "result": district.result,
            "restore_seconds": district.restore_seconds,
        },
    )
    if outcome.passed:
        return
    reason = outcome.reason
    backup_alert(
        name="pitr_drill_failed",
        summary=f"Restore drill {outcome.drill} failed",
        detail=(
            f"Restoring to the drill mark {district.restore_point or '-'} "
            f"({district.target_time or '-'}) did not bring back what the live database held:"
            f"\n{reason}\n\nReceipts: admin, Backups > Drill receipts."
        ),
    )
