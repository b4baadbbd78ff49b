"""`python -m bench pitr`: the steps of the point-in-time recovery benchmark, in one run.

See the package's docstring (bench/pitr/__init__.py) for what is measured and why.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cluster import (
    BACKUP_CODES,
    OPERATOR,
    OWNER,
    REPO,
    BenchCluster,
    Totp,
    available,
    say,
)
from .measure import BenchFailed, Measured, Neighbours, measure
from .report import pitr_markdown, summary_targets
from .writes import LOG_TABLE, WriteLoad, log_table_create

RESULTS = REPO / "bench" / "results"
PLATFORM = "platform"
BY_HAND = "by hand"
# A B B A: drift of a shared machine (other engineers' tests come and go) cancels to first
# order in each pair's means.
ABBA = (PLATFORM, BY_HAND, BY_HAND, PLATFORM)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench pitr",
        description=(
            "Point-in-time recovery with pgBackRest, side by side with the same work by hand, "
            "on a throwaway archiving PostgreSQL 15 cluster holding the load benchmark's "
            "dataset: full and differential backups (platform vs pgBackRest by hand), "
            "backup_now vs pg_dump -Fc, restore to a moment vs the logical restore vs "
            "pg_restore, and the data lost when the server is killed (RPO)."
        ),
    )
    parser.add_argument(
        "--write-minutes",
        type=float,
        default=10.0,
        help="Minutes of write load between the full and the differential backups (10).",
    )
    parser.add_argument(
        "--write-rate",
        type=float,
        default=10.0,
        help="Write transactions a second (10: a class register of ~28 rows, a correction "
        "or a class's marks each).",
    )
    parser.add_argument(
        "--extra-periods",
        type=int,
        default=5,
        help="Grow the dataset: copy each whole-day attendance mark as periods 1..N "
        "(5: about 1.7 GB from the 0.44 GB of schoolhouse_load; 0 keeps it as it is).",
    )
    parser.add_argument(
        "--rpo-minutes",
        type=float,
        default=2.0,
        help="Minutes of write load before the server is killed in the RPO step (2).",
    )
    parser.add_argument(
        "--rpo-trickle-rate",
        type=float,
        default=1.0,
        help="A second RPO step with this many write transactions a second (1: too few to "
        "fill a WAL segment in archive_timeout, which then decides what is archived; 0 skips "
        "it).",
    )
    parser.add_argument(
        "--archive-timeout",
        type=int,
        default=60,
        help="PostgreSQL's archive_timeout and PITR_ARCHIVE_TIMEOUT, seconds (60: the "
        "platform's default).",
    )
    parser.add_argument(
        "--backup-rounds",
        type=int,
        default=2,
        help="Rounds of A B B A for each kind of backup (2: four of each contender).",
    )
    parser.add_argument(
        "--restore-rounds",
        type=int,
        default=2,
        help="Rounds of the three restores (2: the second runs them in reverse order).",
    )
    parser.add_argument(
        "--source-db",
        default=os.environ.get("BENCH_LOAD_DB", "schoolhouse_load"),
        help="The dataset on the shared cluster, read with pg_dump (schoolhouse_load).",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="Where the throwaway cluster, its repository and dumps go (a new directory "
        "under the system's temporary directory).",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    parser.add_argument(
        "--no-write", action="store_true", help="Do not rewrite BENCHMARKS.md's block."
    )
    args = parser.parse_args(argv)
    if args.write_minutes <= 0 or args.write_rate <= 0 or args.rpo_minutes <= 0:
        parser.error("--write-minutes, --write-rate and --rpo-minutes must be positive")
    if args.rpo_trickle_rate < 0:
        parser.error("--rpo-trickle-rate must not be negative")
    if not 1 <= args.archive_timeout <= 60:
        parser.error("--archive-timeout must be between 1 and 60 (the platform's range)")
    if min(args.restore_rounds, args.backup_rounds) < 1 or args.extra_periods < 0:
        parser.error(
            "--backup-rounds and --restore-rounds must be at least 1, --extra-periods not negative"
        )
    return args


def redo_seconds(log: Path) -> float | None:
    """How long PostgreSQL's own recovery took, from its log ("redo done at ... elapsed:
    N s"); the last such line, as the log may hold an earlier recovery's."""
    try:
        found = re.findall(r"redo done at .*elapsed: ([\d.]+) s", log.read_text(errors="replace"))
    except OSError:
        return None
    return float(found[-1]) if found else None


def _s(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.1f}"


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat(timespec="seconds")


class Run:
    """One benchmark run: the cluster, the measurements, and the facts checked on the way."""

    def __init__(self, args: argparse.Namespace, root: Path, out: Path) -> None:
        self.args = args
        self.root = root
        self.out = out
        self.cluster = BenchCluster(root=root, archive_timeout=args.archive_timeout)
        self.totp = Totp()
        self.results: list[Measured] = []
        self.phases: dict[str, float] = {}
        self.facts: dict[str, Any] = {}
        self.writes = WriteLoad(self.cluster.url(OWNER), rate=args.write_rate)

    # --- helpers ------------------------------------------------------------------------
    def phase(self, name: str, work: Callable[[], Any]) -> Any:
        say(f"== {name}")
        clock = time.monotonic()
        try:
            return work()
        finally:
            self.phases[name] = round(time.monotonic() - clock, 1)
            say(f"== {name}: {self.phases[name]:.0f} s")

    def record(self, result: Measured) -> Measured:
        self.results.append(result)
        kinds = ", ".join(f"{k} {v:.0f}" for k, v in result.kinds_mib.items())
        say(
            f"{result.step} / {result.contender}: {result.seconds:.1f} s; ours peak "
            f"{result.ours_peak_mib:.0f} MiB (at once {result.ours_sum_mib:.0f}); {kinds}; "
            f"load {result.load_start:.2f}->{result.load_end:.2f}"
        )
        (self.out / "measurements.json").write_text(
            json.dumps([r.as_dict() for r in self.results], indent=1)
        )
        return result

    def settle(self) -> None:
        """Nothing owed to the archive, a checkpoint done: each step starts alike."""
        waited = self.cluster.archive_settle()
        if waited > 5:
            say(f"(waited {waited:.0f} s for the archiver to catch up)")

    def newest_set(self) -> dict[str, Any]:
        done = subprocess.run(
            self.cluster.pgbackrest_cmd("info", "--output=json"),
            check=True,
            capture_output=True,
            text=True,
        )
        sets = json.loads(done.stdout)[0].get("backup", [])
        return dict(max(sets, key=lambda s: s["timestamp"]["stop"]))

    def physical(self, step: str, backup_type: str, contender: str) -> Measured:
        self.settle()
        env = self.cluster.env()
        if contender == PLATFORM:
            cmd = self.cluster.manage_cmd("backup_now", "--physical", backup_type)
        else:
            cmd = self.cluster.pgbackrest_cmd("backup", f"--type={backup_type}", "--repo=1")
        result = measure(step, contender, cmd, env=env, cwd=REPO)
        newest = self.newest_set()
        info = newest.get("info", {})
        result.output_bytes = info.get("repository", {}).get("delta")
        result.note = (
            f"set {newest['label']}: {info.get('size', 0) / 2**20:.0f} MiB of database, "
            f"{info.get('delta', 0) / 2**20:.0f} MiB copied"
        )
        return self.record(result)

    # --- the steps ----------------------------------------------------------------------
    def build(self) -> None:
        c = self.cluster
        clock = time.monotonic()
        c.create()
        say(f"cluster on 127.0.0.1:{c.port} in {c.root}; copying {self.args.source_db}")
        c.copy_dataset(self.args.source_db)
        c.add_operator()
        copied = time.monotonic()
        added = c.grow(self.args.extra_periods)
        with c.connect(user=OWNER) as conn:
            log_table_create(conn)
        c.settle_dataset()
        grown = time.monotonic()
        c.archiving_on()
        counts = c.sql(
            "SELECT (SELECT count(*) FROM students_student), "
            "(SELECT count(*) FROM students_attendancerecord), "
            "(SELECT count(*) FROM students_grade)"
        )[0]
        tables = c.sql(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
            "AND relnamespace = 'public'::regnamespace ORDER BY 2 DESC LIMIT 4"
        )
        self.facts["dataset"] = {
            "source": self.args.source_db,
            "extra_periods": self.args.extra_periods,
            "rows_added": added,
            "students": counts[0],
            "attendance_rows": counts[1],
            "grades": counts[2],
            "database_bytes": c.database_size(),
            "largest_tables": [[name, size] for name, size in tables],
            "copy_seconds": round(copied - clock, 1),
            "grow_seconds": round(grown - copied, 1),
        }
        say(f"dataset: {self.facts['dataset']}")

    def full_backups(self) -> None:
        for contender in ABBA * self.args.backup_rounds:
            self.physical("full backup", "full", contender)

    def write_load(self) -> None:
        c = self.cluster
        self.writes.prepare()
        lsn = c.wal_lsn()
        seconds = self.args.write_minutes * 60
        say(f"write load: {self.args.write_rate}/s for {seconds:.0f} s")
        stats = self.writes.run(seconds)
        wal = c.wal_bytes_since(lsn)
        # The moment restored to: nine tenths into the load, so the replay covers most of it
        # (the newest set before it is the last full backup).
        moment = stats.started + 0.9 * (stats.ended - stats.started)
        last = stats.last_acked_before(moment)
        self.facts["write_load"] = {
            **stats.summary(),
            "wal_bytes": wal,
            "wal_mib_per_minute": round(wal / 2**20 / ((stats.ended - stats.started) / 60), 1),
        }
        self.facts["moment"] = {
            "epoch": moment,
            "iso": datetime.datetime.fromtimestamp(moment, tz=datetime.UTC).isoformat(),
            "last_acked_seq": last[0] if last else 0,
        }
        say(f"write load: {self.facts['write_load']}")

    def diff_backups(self) -> None:
        for contender in ABBA * self.args.backup_rounds:
            self.physical("differential backup", "diff", contender)
        self.facts["fixed_costs"] = self.fixed_costs()

    def fixed_costs(self, times: int = 3) -> dict[str, float]:
        """What the platform adds around pgBackRest's own work, each part timed alone
        (medians): starting `manage.py backup_now` (Django), and one `pgbackrest info`
        (the platform runs two, before and after, to find the new set)."""

        def median_seconds(cmd: list[str], env: dict[str, str]) -> float:
            runs = []
            for _ in range(times):
                clock = time.monotonic()
                subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
                runs.append(time.monotonic() - clock)
            return round(statistics.median(runs), 2)

        return {
            "django_start_seconds": median_seconds(
                self.cluster.manage_cmd("backup_now", "--help"), self.cluster.env()
            ),
            "pgbackrest_info_seconds": median_seconds(
                self.cluster.pgbackrest_cmd("info", "--output=json"), dict(os.environ)
            ),
        }

    def logical_backups(self) -> None:
        dumps = self.root / "dumps"
        dumps.mkdir(exist_ok=True)
        for i, contender in enumerate(ABBA * self.args.backup_rounds):
            self.settle()
            if contender == PLATFORM:
                result = measure(
                    "logical backup",
                    "backup_now",
                    self.cluster.manage_cmd("backup_now"),
                    env=self.cluster.env(),
                    cwd=REPO,
                )
                match = re.search(r"Backup #(\d+) succeeded", result.stdout_tail)
                if match is None:
                    raise BenchFailed(f"backup_now said: {result.stdout_tail[-500:]}")
                self.facts["logical_run_id"] = int(match.group(1))
                newest = max(
                    (self.root / "backups").rglob("*.zst.tink"), key=lambda p: p.stat().st_mtime
                )
                result.output_bytes = newest.stat().st_size
                result.note = "pg_dump -Fc -Z0 → zstd -1 → Tink AES-256-GCM, re-read and hashed"
            else:
                path = dumps / f"pg_dump-{i}.dump"
                result = measure(
                    "logical backup",
                    "pg_dump -Fc",
                    ["pg_dump", "-Fc", "-d", self.cluster.url(OWNER), "-f", str(path)],
                    env=dict(os.environ),
                    cwd=REPO,
                )
                result.output_bytes = path.stat().st_size
                result.note = "pg_dump's default compression (gzip 6), to a local file"
                self.facts["pg_dump_file"] = str(path)
            self.record(result)

    def restores(self) -> None:
        order = ["restore to a moment", "logical restore", "pg_restore"]
        self.facts["restore_checks"] = []
        for round_ in range(self.args.restore_rounds):
            for name in order if round_ % 2 == 0 else list(reversed(order)):
                self.settle()
                {
                    "restore to a moment": self.restore_to_moment,
                    "logical restore": self.restore_logical,
                    "pg_restore": self.restore_pg,
                }[name](round_)

    def restore_to_moment(self, round_: int) -> None:
        moment = self.facts["moment"]
        cmd = self.cluster.manage_cmd(
            "restore_backup",
            "--to-time",
            moment["iso"],
            "--operator",
            OPERATOR,
            "--otp-token",
            self.totp.code(),
        )
        result = measure(
            "restore", "restore_backup --to-time", cmd, env=self.cluster.env(), cwd=REPO
        )
        match = re.search(r"runs in (\S+) on 127\.0\.0\.1:(\d+)", result.stdout_tail)
        if match is None:
            raise BenchFailed(f"restore_backup --to-time said: {result.stdout_tail[-800:]}")
        data_dir, port = Path(match.group(1)), int(match.group(2))
        restored = BenchCluster(root=self.root, archive_timeout=1, port=port)
        seq, at = restored.sql(f"SELECT max(seq), max(at) FROM {LOG_TABLE}")[0]
        rows = restored.value("SELECT count(*) FROM students_attendancerecord")
        # Every transaction acknowledged before the moment is there, none begun after it.
        acked = self.writes.stats.ack_of(seq) if seq else None
        check = {
            "step": "restore to a moment",
            "round": round_,
            "moment": moment["iso"],
            "restored_max_seq": seq,
            "restored_newest_write": at.isoformat() if at else None,
            "last_acked_before_moment": moment["last_acked_seq"],
            "ok": bool(
                seq and seq >= moment["last_acked_seq"] and at.timestamp() <= moment["epoch"]
            ),
            "attendance_rows": rows,
            "restored_max_seq_acked_at": _iso(acked) if acked else None,
        }
        self.facts["restore_checks"].append(check)
        files = result.at("replaying WAL")
        done = result.at("Restored to")
        check["files_seconds"] = files
        check["replay_and_checks_seconds"] = round(done - files, 1) if files and done else None
        check["replay_seconds"] = redo_seconds(data_dir.parent / f"{data_dir.name}.log")
        result.note = (
            f"files restored by pgBackRest at {_s(files)} s, WAL replayed "
            f"({_s(check['replay_seconds'])} s by PostgreSQL's count) and the cluster checked "
            f"at {_s(done)} s; writes up to #{seq} "
            f"(#{moment['last_acked_seq']} acknowledged before the moment)"
        )
        self.record(result)
        self.cluster.stop(data=data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(data_dir.parent / f"{data_dir.name}.sock", ignore_errors=True)
        (data_dir.parent / f"{data_dir.name}.log").unlink(missing_ok=True)

    def restore_logical(self, round_: int) -> None:
        name = f"bench_logical_restore_{round_}"
        run_id = self.facts["logical_run_id"]
        cmd = self.cluster.manage_cmd(
            "restore_backup",
            str(run_id),
            "--target-database",
            self.cluster.url(OWNER, name),
            "--operator",
            OPERATOR,
            "--otp-token",
            self.totp.code(),
        )
        result = measure(
            "restore", "restore_backup (logical)", cmd, env=self.cluster.env(), cwd=REPO
        )
        rows = self.cluster.value("SELECT count(*) FROM students_attendancerecord", name)
        result.note = f"backup #{run_id} into a new database; {rows} attendance rows"
        self.facts["restore_checks"].append(
            {"step": "logical restore", "round": round_, "attendance_rows": rows}
        )
        self.record(result)
        self.cluster.drop_database(name)

    def restore_pg(self, round_: int) -> None:
        name = f"bench_pg_restore_{round_}"
        dump = self.facts["pg_dump_file"]
        # The platform's flags (one transaction, no owners or grants), one job: as it streams.
        script = (
            'createdb "$1" && exec pg_restore --no-owner --no-privileges --exit-on-error '
            '--single-transaction -d "$1" "$2"'
        )
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.cluster.port),
            "PGUSER": OWNER,
            "PGPASSWORD": OWNER,
        }
        result = measure(
            "restore",
            "createdb + pg_restore",
            ["sh", "-c", script, "sh", name, dump],
            env=env,
            cwd=REPO,
        )
        rows = self.cluster.value("SELECT count(*) FROM students_attendancerecord", name)
        result.note = f"the last pg_dump -Fc file into a new database; {rows} attendance rows"
        self.facts["restore_checks"].append(
            {"step": "pg_restore", "round": round_, "attendance_rows": rows}
        )
        self.record(result)
        self.cluster.drop_database(name)

    def rpo(self) -> None:
        """The server killed and rebuilt, twice: under the write load (segments fill in
        seconds), and with a trickle of writes (segments are closed by archive_timeout: the
        longest a quiet server's writes wait for the archive)."""
        cases = [("under the write load", self.args.write_rate, self.args.rpo_minutes)]
        if self.args.rpo_trickle_rate:
            # Enough of the trickle to see two segments closed by archive_timeout.
            minutes = max(self.args.rpo_minutes, 2.5 * self.args.archive_timeout / 60)
            cases.append(("a trickle of writes", self.args.rpo_trickle_rate, minutes))
        self.facts["rpo"] = []
        for i, (name, rate, minutes) in enumerate(cases):
            if i:
                self.cluster.manage("pitr", "setup")  # archiving again after the recovery
            self.facts["rpo"].append(self.rpo_case(name, rate, minutes, BACKUP_CODES[i]))

    def rpo_case(self, name: str, rate: float, minutes: float, code: str) -> dict[str, Any]:
        """Writes go on, the server is killed when its newest archived WAL is about as old as
        it gets under these writes (the worst moment), its data directory is lost, and
        recover_server brings it back from the repository."""
        c = self.cluster
        self.settle()
        # A fresh incremental, as the nightly schedule would have: the recovery replays
        # this step's WAL, not the restores' (which wrote two copies of the database).
        self.physical(f"incremental backup before the RPO step ({name})", "incr", PLATFORM)
        timeout = self.args.archive_timeout
        self.writes.rate = rate
        self.writes.start(minutes * 60 + 4 * timeout + 60)
        # The gaps between archived segments during the load: segments are closed when full
        # or after archive_timeout, whichever comes first.
        gaps: list[float] = []
        last_seen: float | None = None
        load_ends = time.monotonic() + minutes * 60
        while time.monotonic() < load_ends:
            age = c.last_archived_age()
            if age is not None:
                archived = time.time() - age
                if last_seen is not None and archived - last_seen > 0.5:
                    gaps.append(archived - last_seen)
                last_seen = archived if last_seen is None else max(last_seen, archived)
            time.sleep(0.2)
        longest = min(max(gaps, default=float(timeout)), float(timeout))
        # Just before the next segment is due: half a second short of the gap when segments
        # come like clockwork (archive_timeout), the median gap when they come unevenly
        # (full segments), so that the moment is reached and not overshot.
        aim = max(min(longest - 0.5, statistics.median(gaps) if gaps else longest), 0.5)
        deadline = time.monotonic() + 3 * timeout
        age = c.last_archived_age() or 0.0
        while time.monotonic() < deadline:
            age = c.last_archived_age() or 0.0
            if age >= aim:
                break
            time.sleep(0.1)
        killed_at = c.kill()
        self.writes.join(60)
        stats = self.writes.stats
        last_ack = stats.last_acked_before(killed_at)
        say(f"killed at {_iso(killed_at)}; newest archive {age:.1f} s old; last ack {last_ack}")
        time.sleep(1)
        lost_dir = c.root / "data.lost"
        os.replace(c.data, lost_dir)
        cmd = c.manage_cmd("recover_server", "--operator", OPERATOR, "--otp-token", code)
        result = measure(
            f"RPO, {name}: recover_server to latest", "recover_server", cmd, env=c.env(), cwd=REPO
        )
        seq, at = c.sql(f"SELECT max(seq), max(at) FROM {LOG_TABLE}")[0]
        acked = stats.ack_of(int(seq)) if seq else None
        lost = [s for s, t in stats.acks if t <= killed_at and s > (seq or 0)]
        first_lost = stats.ack_of(lost[0]) if lost else None
        recovered_to = re.search(r"last transaction (.+?), timeline", result.stdout_tail)
        case = {
            "case": name,
            "archive_timeout": timeout,
            "write_load": stats.summary(),
            "killed_at": _iso(killed_at),
            "newest_archive_age_at_kill": round(age, 1),
            "archive_gaps_seconds": [round(g, 1) for g in gaps],
            "longest_archive_gap": round(longest, 1),
            "last_acked_seq": last_ack[0] if last_ack else None,
            "recovered_max_seq": seq,
            "recovered_newest_write": at.isoformat() if at else None,
            "recovered_to": recovered_to.group(1) if recovered_to else None,
            "acked_transactions_lost": len(lost),
            # The writes lost, as time: the recovered state is of a moment between the newest
            # commit recovered and the first one lost, so the RPO lies between the kill's
            # distance from the one (the figure, the conservative end) and from the other.
            "rpo_seconds": round(killed_at - acked, 1) if acked else None,
            "rpo_lower_seconds": round(killed_at - first_lost, 1) if first_lost else None,
            "replay_seconds": redo_seconds(c.root / f"{c.data.name}.log"),
        }
        steps = "; ".join(
            line.strip() for _at, line in result.lines if re.match(r"\s+[a-z ]+: [\d.]+ s$", line)
        )
        result.note = (
            f"{steps} (WAL replay {_s(case['replay_seconds'])} s); recovered writes up to "
            f"#{seq}; {len(lost)} acknowledged transactions lost"
        )
        self.record(result)
        shutil.rmtree(lost_dir, ignore_errors=True)
        say(f"RPO, {name}: {case}")
        return case

    def cleanup(self) -> None:
        for data in [self.cluster.data, *sorted((self.root / "restores").glob("*"))]:
            if (data / "postmaster.pid").exists():
                self.cluster.stop(data=data)
        lost = self.root / "data.lost"
        pid = self.cluster.postmaster_pid(lost) if lost.exists() else None
        if pid:
            self.cluster.stop(data=lost)


def commit_id() -> str:
    # BENCH_COMMIT: a checkout made with `git archive` (away from others' edits) has no .git.
    return (
        os.environ.get("BENCH_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = available()
    if problem:
        print(f"bench pitr cannot run here: {problem}", flush=True)
        return 2
    from bench.load.services import machine

    started = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"pitr-{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="schoolhouse-bench-pitr-", dir=args.work_dir))
    host = machine()
    neighbours = Neighbours(root).start()
    run = Run(args, root, out)
    say(f"machine: {host['cores']} cores ({host['cpu']}), load {host['load']}; work in {root}")
    clock = time.monotonic()
    error = ""
    try:
        run.phase("build the cluster and its dataset", run.build)
        run.phase("full backups", run.full_backups)
        run.phase("write load", run.write_load)
        run.phase("differential backups", run.diff_backups)
        run.phase("logical backups", run.logical_backups)
        run.phase("restores", run.restores)
        run.phase("RPO", run.rpo)
    except (BenchFailed, subprocess.CalledProcessError, RuntimeError) as exc:
        error = str(exc)
        if isinstance(exc, subprocess.CalledProcessError):
            error += f"\n{exc.stdout or ''}\n{exc.stderr or ''}".rstrip()
        say(f"FAILED: {error[-3000:]}")
    finally:
        neighbours.stop()
        run.cleanup()
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "commit": commit_id(),
        "command": "python -m bench pitr " + " ".join(argv or []),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": host,
        "neighbours": neighbours.summary(),
        "load_at_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "run_seconds": round(time.monotonic() - clock),
        "phases": run.phases,
        "facts": run.facts,
        "measurements": [r.as_dict() for r in run.results],
        "error": error,
        "results_dir": str(out.relative_to(REPO)),
    }
    summary["targets"] = summary_targets(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    markdown = pitr_markdown(summary)
    (out / "summary.md").write_text(markdown)
    # A failed run's figures stay in its results directory; the block keeps the last whole run.
    if not args.no_write and not error:
        from bench.load import report

        report.block_update(PITR_MARK, PITR_HEADING, markdown)
    print("\n" + markdown, flush=True)
    return 1 if error else 0


PITR_MARK = "<!-- pitr -->"
PITR_HEADING = "### Point-in-time recovery"
