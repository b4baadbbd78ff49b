"""Backup benchmark (issue 5, point 9): one run, side by side, on a generated database.

    .venv/bin/python bench/backup_bench.py generate [--students 200000 --attendance 10000000]
    .venv/bin/python bench/backup_bench.py run [--rounds 3] [--skip-dbbackup] [--skip-restores]

`generate` builds `schoolhouse_bench` (dropped first) with `manage.py migrate`, then fills the
students tables with `INSERT ... SELECT generate_series` (10 schools; secondary indexes are
dropped during the load and rebuilt after, which is what makes 10 M rows take about a minute).

`run` measures wall time, the peak RSS of every process of the tree (psutil polling every
50 ms; "tree peak" is the largest sum seen at once), the bytes the tree wrote to disk and the
output size of each contender. The dump contenders run interleaved for `--rounds` rounds
(other work on a shared machine then slows them alike) and the Markdown table for
BENCHMARKS.md gives each one's median wall time with its range, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv" / "bin" / "python")
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
BENCH_DB = os.environ.get("BENCH_DB", "schoolhouse_bench")
OWNER = "schoolhouse"


def db_url(name: str) -> str:
    return f"postgres://{OWNER}:{OWNER}@{PG_HOST}:{PG_PORT}/{name}"


def psql(sql: str, *, db: str = "postgres", user: str = "postgres") -> str:
    out = subprocess.run(
        [
            "psql",
            "-h",
            PG_HOST,
            "-p",
            PG_PORT,
            "-U",
            user,
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAq",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        {
            "SCHOOLHOUSE_TESTING": "true",
            "DB_POOL": "false",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "console",
            "PATH": f"{REPO / '.venv' / 'bin'}:{env['PATH']}",
        }
    )
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------
# Data generation
# --------------------------------------------------------------------------------------------
LOAD_SQL = """
SET session_replication_role = replica;  -- no FK triggers during the bulk load
SET maintenance_work_mem = '1GB';
SELECT setseed(0.42);  -- the same data every run
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                       is_staff, is_active, date_joined)
VALUES ('!', false, 'bench-teacher', 'Bench', 'Teacher', '', true, true, now());
INSERT INTO students_school (name, code, address, phone, email, principal_name, is_active,
                             created_at)
SELECT 'Bench School ' || s, 'bench' || s, s || ' Main Street', '555-01' || s,
       'office' || s || '@example.org', 'Principal ' || s, true, now()
FROM generate_series(1, 10) s;
INSERT INTO students_academicyear (name, starts_on, ends_on, is_current, school_id)
SELECT '2026-2027', '2026-09-01', '2027-06-30', true, id FROM students_school;
INSERT INTO students_gradelevel (name, "order", school_id)
SELECT 'Grade ' || g, g, s.id FROM students_school s, generate_series(1, 12) g;
INSERT INTO students_section (name, room, capacity, academic_year_id, grade_level_id, school_id)
SELECT g.order || chr(64 + n), 'R' || g.order || n, 30, y.id, g.id, g.school_id
FROM students_gradelevel g JOIN students_academicyear y ON y.school_id = g.school_id,
     generate_series(1, 8) n;
CREATE TEMP TABLE sec AS
SELECT id, school_id, row_number() OVER (PARTITION BY school_id ORDER BY id) - 1 AS k
FROM students_section;
INSERT INTO students_student (student_number, first_name, middle_name, last_name,
    preferred_name, date_of_birth, gender, status, admitted_on, email, phone, address,
    medical_notes, notes, created_at, updated_at, grade_level_id, school_id)
SELECT 'B' || lpad(i::text, 7, '0'),
       (ARRAY['Ada','Ben','Chloe','Dev','Emma','Farid','Grace','Hugo','Iris','Jon'])[1 + i % 10],
       '', (ARRAY['Nguyen','Smith','Garcia','Okafor','Kim','Rossi','Ivanova','Haddad'])[1 + i % 8]
           || ' ' || (i % 9973),
       '', date '2010-01-01' + (i % 2500), (ARRAY['F','M',''])[1 + i % 3], 'active',
       '2024-09-01', 'student' || i || '@example.org', '555-' || lpad((i % 10000)::text, 4, '0'),
       i || ' Elm Street', CASE WHEN i % 17 = 0 THEN 'Peanut allergy' ELSE '' END, '',
       now(), now(), NULL, 1 + (i % 10)
FROM generate_series(0, %(students)s - 1) i;
UPDATE students_school SET id = id;  -- keep ids stable for the lookups below
INSERT INTO students_enrollment (started_on, ended_on, end_reason, academic_year_id,
                                 school_id, section_id, student_id)
SELECT '2026-09-01', NULL, '', y.id, st.school_id, sec.id, st.id
FROM students_student st
JOIN students_academicyear y ON y.school_id = st.school_id
JOIN sec ON sec.school_id = st.school_id AND sec.k = st.id % 96;
CREATE TEMP TABLE st AS
SELECT e.student_id, e.section_id, e.school_id FROM students_enrollment e;
INSERT INTO students_attendancerecord (date, period, status, note, recorded_at,
    recorded_by_id, school_id, section_id, student_id)
-- The way the application writes it (students.services.attendance_record_bulk): a section's
-- register is taken once a day, each row stamped with timezone.now() microseconds apart, and
-- the rows arrive day after day, section after section.
SELECT date '2026-09-01' + d, 0,
       (ARRAY['present','present','present','present','present','present','present','late',
              'absent','excused'])[1 + floor(random() * 10)::int],
       CASE WHEN random() < 0.03 THEN 'Called in: ' || md5(random()::text) ELSE '' END,
       timestamptz '2026-09-01 08:00+00' + d * interval '1 day'
           + ((st.section_id * 7919 + d * 104729) % 10800) * interval '1 second'
           + ((st.section_id * 31337 + d * 7) % 1000000) * interval '1 microsecond'
           + (st.student_id % 1000) * interval '4 microseconds',
       (SELECT id FROM auth_user WHERE username = 'bench-teacher'),
       st.school_id, st.section_id, st.student_id
FROM generate_series(0, %(days)s - 1) d, st
ORDER BY d, st.section_id, st.student_id;
"""


def generate(*, students: int, attendance: int) -> None:
    """Create the benchmark database from scratch."""
    t0 = time.monotonic()
    psql(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{BENCH_DB}" OWNER {OWNER}')
    subprocess.run(
        [PY, "manage.py", "migrate", "-v", "0"],
        cwd=REPO,
        check=True,
        env=base_env(DATABASE_URL=db_url(BENCH_DB)),
    )
    print(f"migrated in {time.monotonic() - t0:.1f}s", flush=True)
    # Secondary indexes of the big tables go during the load and come back after: a sorted
    # index build is many times faster than 10 M random inserts into eight b-trees.
    tables = ("students_attendancerecord", "students_student", "students_enrollment")
    names = ",".join(f"'{t}'" for t in tables)
    constraints = psql(
        "SELECT json_agg(json_build_array(conrelid::regclass::text, conname, "
        "pg_get_constraintdef(oid))) FROM pg_constraint WHERE contype = 'u' "
        f"AND conrelid::regclass::text IN ({names})",
        db=BENCH_DB,
    )
    indexes = psql(
        "SELECT json_agg(json_build_array(indexname, indexdef)) FROM pg_indexes "
        f"WHERE tablename IN ({names}) AND indexname NOT LIKE '%%_pkey' AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE contype = 'u')".replace("%%", "%"),
        db=BENCH_DB,
    )
    cons = json.loads(constraints or "null") or []
    idx = json.loads(indexes or "null") or []
    drops = [f'ALTER TABLE {t} DROP CONSTRAINT "{c}";' for t, c, _ in cons]
    drops += [f'DROP INDEX "{n}";' for n, _ in idx]
    psql("\n".join(drops), db=BENCH_DB)
    days = max(1, attendance // students)
    sql = LOAD_SQL.replace("%(students)s", str(students)).replace("%(days)s", str(days))
    psql(sql, db=BENCH_DB)
    print(f"loaded in {time.monotonic() - t0:.1f}s", flush=True)
    rebuild = [f'ALTER TABLE {t} ADD CONSTRAINT "{c}" {d};' for t, c, d in cons]
    rebuild += [f"{d};" for _, d in idx]
    psql("SET maintenance_work_mem = '1GB';\n" + "\n".join(rebuild), db=BENCH_DB)
    psql("VACUUM ANALYZE", db=BENCH_DB)
    size = psql(f"SELECT pg_size_pretty(pg_database_size('{BENCH_DB}'))")
    rows = psql("SELECT count(*) FROM students_attendancerecord", db=BENCH_DB)
    print(
        f"generated {BENCH_DB}: {size}, {rows} attendance rows, in {time.monotonic() - t0:.1f}s",
        flush=True,
    )


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    seconds: float
    peaks: dict[str, float] = field(default_factory=dict)  # process name -> peak RSS MiB
    tree_peak: float = 0.0  # largest sum of the tree's RSS seen at once, MiB
    disk_writes: float = 0.0  # bytes written to disk by the tree, MiB
    output: int | None = None  # bytes
    note: str = ""
    load: float = 0.0  # the 1-minute load average when the contender finished
    cpu: float = 0.0  # CPU seconds the whole machine spent meanwhile (PostgreSQL's too)


def process_label(p: psutil.Process) -> str:
    """A short name for a process of the tree: the executable, or for Python what it runs."""
    name = p.name()
    if not name.startswith("python"):
        return name
    args = p.cmdline()[1:]
    if "-m" in args:
        return f"python -m {args[args.index('-m') + 1]}"
    for i, arg in enumerate(args):
        if arg.endswith("manage.py") and i + 1 < len(args):
            return f"manage.py {args[i + 1]}"
    return "python"


def peak_rss(p: psutil.Process) -> int:
    """The process's own peak RSS so far (VmHWM: the kernel's high-water mark of its
    address space, reset by exec), so a spike between two polls is not missed."""
    try:
        with open(f"/proc/{p.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return int(p.memory_info().rss)


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process of the machine so far (not idle, not waiting on
    I/O). The difference over a run counts the PostgreSQL backend serving a dump too, which
    no process tree of ours contains; on a quiet machine it is the work the run took, and
    that work divided by the cores is the shortest wall time any schedule could give it."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


def measure(
    name: str,
    cmd: list[str] | str,
    *,
    env: dict[str, str] | None = None,
    output: Path | None = None,
    output_size: int | None = None,
    note: str = "",
) -> Result:
    """Run `cmd`, polling its process tree every 50 ms.

    Each process's peak is its own VmHWM (exact, not sampled); the tree's peak is the
    largest sum of current RSS seen at one poll. Disk writes come from the kernel's
    accounting of the whole tree (`wait4`'s ru_oublock, which includes every descendant
    that was waited for), so a child's writes are counted once. (`ru_maxrss` is no per-
    process figure: a child spawned with vfork inherits its parent's high-water mark.)
    """
    t0 = time.monotonic()
    cpu0 = machine_busy_seconds()
    proc = subprocess.Popen(
        cmd,
        shell=isinstance(cmd, str),
        cwd=REPO,
        env=env or base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    peaks: dict[int, tuple[str, int]] = {}
    tree_peak = 0
    out_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    labels: dict[int, str] = {}
    # WNOWAIT: notice the exit without reaping, so that wait4 below gets the tree's rusage.
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
                hwm = peak_rss(p)
                if p.pid not in labels:
                    labels[p.pid] = process_label(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            if hwm > peaks.get(p.pid, ("", 0))[1]:
                peaks[p.pid] = (labels[p.pid], hwm)
        tree_peak = max(tree_peak, total)
        time.sleep(0.05)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    seconds = time.monotonic() - t0
    cpu = machine_busy_seconds() - cpu0
    text = b"".join(out_chunks).decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{text[-3000:]}")
    by_name: dict[str, float] = {}
    for pname, rss in peaks.values():
        if pname in {"sh", "time"}:
            continue
        by_name[pname] = max(by_name.get(pname, 0.0), rss / 2**20)
    size = (
        output_size
        if output_size is not None
        else (output.stat().st_size if output and output.exists() else None)
    )
    result = Result(
        name=name,
        seconds=seconds,
        peaks=by_name,
        tree_peak=tree_peak / 2**20,
        disk_writes=usage.ru_oublock * 512 / 2**20,
        output=size,
        note=note,
        load=os.getloadavg()[0],
        cpu=cpu,
    )
    print(
        f"{name:<48} {seconds:7.1f} s  cpu {cpu:6.1f} s  "
        f"peaks {fmt_peaks(by_name)} (tree {result.tree_peak:.0f})"
        f"  writes {result.disk_writes:7.1f} MiB  "
        f"out {fmt_size(size)}  load {result.load:.1f}",
        flush=True,
    )
    return result


def fmt_peaks(peaks: dict[str, float]) -> str:
    return ", ".join(f"{n} {v:.0f}" for n, v in sorted(peaks.items(), key=lambda kv: -kv[1]))


def fmt_size(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.1f} MiB"


def fresh_db(name: str) -> str:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}" OWNER {OWNER}')
    return name


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import boto3

    for _ in range(100):
        try:
            boto3.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id="bench",
                aws_secret_access_key="bench",  # noqa: S106 - emulator
                region_name="us-east-1",
            ).create_bucket(Bucket="bench")
            return server, url
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise SystemExit("moto_server did not start")


DBBACKUP_SETTINGS = """
SECRET_KEY = "bench-only-not-secret-0123456789-0123456789-0123456789"
INSTALLED_APPS = ["dbbackup"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": "{db}",
    "USER": "{owner}", "PASSWORD": "{owner}", "HOST": "{host}", "PORT": "{port}"}}}}
STORAGES = {{"dbbackup": {{"BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {{"location": "{out}"}}}}}}
DBBACKUP_GPG_RECIPIENT = "bench@example.org"
DBBACKUP_GPG_ALWAYS_TRUST = True
USE_TZ = True
"""


def dbbackup_setup(work: Path) -> tuple[list[str], dict[str, str], Path] | None:
    """django-dbbackup in a throwaway venv (never in the project's requirements)."""
    venv = Path(os.environ.get("BENCH_DBBACKUP_VENV", "/tmp/dbbvenv"))
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "Django==5.2.19",
                "django-dbbackup==5.4.0",
                "python-gnupg==0.5.7",
                "psycopg[binary]==3.3.9",
            ],
            check=True,
        )
    gnupg = work / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {
        **os.environ,
        "GNUPGHOME": str(gnupg),
        "PYTHONPATH": str(work),
        "DJANGO_SETTINGS_MODULE": "dbb_settings",
    }
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "bench@example.org",
            "default",
            "default",
            "never",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    out = work / "dbbackup-out"
    out.mkdir()
    (work / "dbb_settings.py").write_text(
        DBBACKUP_SETTINGS.format(db=BENCH_DB, owner=OWNER, host=PG_HOST, port=PG_PORT, out=out)
    )
    return [str(venv / "bin" / "django-admin"), "dbbackup", "--compress", "--encrypt"], env, out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(name: str, runs: list[Result]) -> dict[str, object]:
    """One table row from the rounds of one contender: median wall time (and the range),
    the highest peak RSS each process reached in any round, median writes and output."""
    peaks: dict[str, float] = {}
    for r in runs:
        for label, value in r.peaks.items():
            peaks[label] = max(peaks.get(label, 0.0), value)
    outputs = [r.output for r in runs if r.output is not None]
    return {
        "name": name,
        "note": runs[0].note,
        "median": median([r.seconds for r in runs]),
        "low": min(r.seconds for r in runs),
        "high": max(r.seconds for r in runs),
        "n": len(runs),
        "peaks": peaks,
        "tree": max(r.tree_peak for r in runs),
        "writes": median([r.disk_writes for r in runs]),
        "output": int(median([float(o) for o in outputs])) if outputs else None,
        "load": median([r.load for r in runs]),
        "cpu": median([r.cpu for r in runs]),
    }


def run(
    *, skip_dbbackup: bool, skip_restores: bool, rounds: int, restore_rounds: int, level3: bool
) -> None:
    machine = f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    size = psql(f"SELECT pg_size_pretty(pg_database_size('{BENCH_DB}'))")
    rows = psql("SELECT count(*) FROM students_attendancerecord", db=BENCH_DB)
    print(f"{BENCH_DB}: {size}, {rows} attendance rows; {machine}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    keyset = work / "keyset.json"
    env = base_env(
        DATABASE_URL=db_url(BENCH_DB),
        BACKUP_KEYSET_PATH=str(keyset),
        SCHOOLHOUSE_TESTING="false",
        DEBUG="false",
        SECRET_KEY="bench-only-not-secret-0123456789-0123456789-0123456789",  # noqa: S106
    )
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
    subprocess.run(
        [PY, "manage.py", "backup_keys", "create"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    # restore_backup names its operator (a district administrator) when it asks for one.
    operator: list[str] = []
    helptext = subprocess.run(
        [PY, "manage.py", "restore_backup", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "--operator" in helptext:
        code = (
            "from django.contrib.auth.models import User; "
            "User.objects.filter(username='bench-admin').exists() or "
            "User.objects.create_superuser('bench-admin', '', None)"
        )
        subprocess.run([PY, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True)
        operator = ["--operator", "bench-admin"]
    moto, s3_url = start_moto()
    s3_env = {
        **env,
        "BACKUP_DESTINATIONS": "s3",
        "BACKUP_S3_BUCKET": "bench",
        "BACKUP_S3_ENDPOINT_URL": s3_url,
        "BACKUP_S3_REGION": "us-east-1",
        "BACKUP_S3_ACCESS_KEY_ID": "bench",
        "BACKUP_S3_SECRET_ACCESS_KEY": "bench",
    }
    local_env = {**env, "BACKUP_DESTINATIONS": "local", "BACKUP_LOCAL_DIR": str(work / "local")}
    pg = {
        **os.environ,
        "PGHOST": PG_HOST,
        "PGPORT": PG_PORT,
        "PGUSER": OWNER,
        "PGPASSWORD": OWNER,
        "PGDATABASE": BENCH_DB,
    }
    results: dict[str, list[Result]] = {}

    def add(result: Result) -> Result:
        results.setdefault(result.name, []).append(result)
        return result

    def attempt(contender: Callable[[], Result]) -> None:
        """A restore that fails is reported and the run goes on to print the table."""
        try:
            add(contender())
        except SystemExit as exc:
            print(f"FAILED: {exc}", flush=True)

    def last_run(e: dict[str, str]) -> tuple[str, int]:
        out = subprocess.run(
            [PY, "manage.py", "list_backups", "--limit", "1"],
            cwd=REPO,
            env=e,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        run_id = out.splitlines()[1].split()[0]
        code = (
            "from backups.models import BackupRun as B; "
            f"print(B.objects.get(pk={run_id}).stored_size)"
        )
        return run_id, int(
            subprocess.run(
                [PY, "manage.py", "shell", "-c", code],
                cwd=REPO,
                env=e,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
        )

    fc = work / "plain.dump"
    local_run = s3_run = ""
    try:
        # The contenders take turns, round after round, so that a burst of load from other
        # work on the machine hits them all alike; the table reports medians.
        for round_ in range(1, rounds + 1):
            print(f"-- round {round_} of {rounds}", flush=True)
            add(measure("pg_dump -Fc (file)", ["pg_dump", "-Fc", "-f", str(fc)], env=pg, output=fc))
            add(
                measure(
                    "pg_dump -Fc -Z0 > /dev/null (the dump alone)",
                    "pg_dump -Fc -Z0 > /dev/null",
                    env=pg,
                )
            )
            for level in (3, 1):
                z = work / f"floor{level}.dump.zst"
                add(
                    measure(
                        f"pg_dump -Fc -Z0 | zstd -{level} (file)",
                        f"pg_dump -Fc -Z0 | zstd -{level} -q -f -o {z}",
                        env=pg,
                        output=z,
                    )
                )
            r = add(
                measure(
                    "backup_now → local (zstd -1, Tink, sha256, re-read)",
                    [PY, "manage.py", "backup_now", "-v", "0"],
                    env=local_env,
                )
            )
            local_run, r.output = last_run(local_env)
            r = add(
                measure(
                    "backup_now → S3 emulator (moto)",
                    [PY, "manage.py", "backup_now", "-v", "0"],
                    env=s3_env,
                    note="no local copy of the dump",
                )
            )
            s3_run, r.output = last_run(s3_env)
        if level3:
            l3 = {**local_env, "BACKUP_ZSTD_LEVEL": "3", "BACKUP_LOCAL_DIR": str(work / "l3")}
            r = add(
                measure(
                    "backup_now → local, BACKUP_ZSTD_LEVEL=3",
                    [PY, "manage.py", "backup_now", "-v", "0"],
                    env=l3,
                )
            )
            _l3_run, r.output = last_run(l3)
        if not skip_dbbackup:
            cmd, dbb_env, out = dbbackup_setup(work)
            r = add(measure("django-dbbackup dbbackup --compress --encrypt", cmd, env=dbb_env))
            r.output = sum(p.stat().st_size for p in out.iterdir())
        if not skip_restores:
            for round_ in range(1, restore_rounds + 1):
                print(f"-- restore round {round_} of {restore_rounds}", flush=True)
                add(
                    measure(
                        "pg_restore (1 job) of pg_dump -Fc file",
                        ["pg_restore", "--no-owner", "-d", fresh_db("bench_r1"), str(fc)],
                        env=pg,
                    )
                )
                add(
                    measure(
                        "pg_restore -j 2 of pg_dump -Fc file",
                        [
                            "pg_restore",
                            "--no-owner",
                            "-j",
                            "2",
                            "-d",
                            fresh_db("bench_r2"),
                            str(fc),
                        ],
                        env=pg,
                    )
                )
                for label, run_id, renv, note in (
                    ("local", local_run, local_env, "streamed into one pg_restore job"),
                    ("S3 emulator", s3_run, s3_env, "streamed: no local copy"),
                ):
                    attempt(
                        lambda label=label, run_id=run_id, renv=renv, note=note: measure(
                            f"restore_backup (from {label}) --target-database",
                            [
                                PY,
                                "manage.py",
                                "restore_backup",
                                run_id,
                                "-v",
                                "0",
                                *operator,
                                "--target-database",
                                db_url(fresh_db("bench_r3")),
                            ],
                            env=renv,
                            note=note,
                        )
                    )
    finally:
        moto.terminate()
        for name in ("bench_r1", "bench_r2", "bench_r3"):
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    rows_ = [summarize(name, runs) for name, runs in results.items()]
    by_name = {row["name"]: row for row in rows_}
    print()
    print(f"Database `{BENCH_DB}`: {size} on disk, {rows} attendance rows. Machine: {machine}.")
    print(f"Rounds: {rounds} (restores: {restore_rounds}).")
    print()
    print(
        "| what | wall time, median (range) | machine CPU | peak RSS per process (MiB) | "
        "tree peak | disk writes | output | load avg |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for row in rows_:
        note = f" ({row['note']})" if row["note"] else ""
        label = f"{row['name']}{note}".replace("|", "\\|")  # a shell pipe in a Markdown cell
        spread = f" ({row['low']:.1f}–{row['high']:.1f})" if row["n"] > 1 else ""
        print(
            f"| {label} | {row['median']:.1f} s{spread} | {row['cpu']:.1f} s | "
            f"{fmt_peaks(row['peaks'])} | "  # type: ignore[arg-type]
            f"{row['tree']:.0f} MiB | {row['writes']:.0f} MiB | "
            f"{fmt_size(row['output'])} | {row['load']:.1f} |"  # type: ignore[arg-type]
        )
    plain = by_name.get("pg_dump -Fc (file)")
    floor = by_name.get("pg_dump -Fc -Z0 | zstd -3 (file)")
    print()
    cores = psutil.cpu_count() or 1
    if plain and floor:
        # The floor's work (server COPY, pg_dump, zstd) spread perfectly over every core is
        # the shortest wall time any pipeline that does at least that work could reach.
        print(
            f"zstd floor: {floor['cpu']:.1f} CPU s on {cores} cores -> at least "  # type: ignore[str-format]
            f"{floor['cpu'] / cores:.1f} s wall = "  # type: ignore[operator]
            f"{floor['cpu'] / cores / plain['median']:.2f}x pg_dump -Fc"  # type: ignore[operator]
        )
    for name in (
        "backup_now → local (zstd -1, Tink, sha256, re-read)",
        "backup_now → S3 emulator (moto)",
    ):
        row = by_name.get(name)
        if row and plain and floor:
            print(
                f"{name}: {row['median'] / plain['median']:.2f}x pg_dump -Fc, "  # type: ignore[operator]
                f"{row['median'] / floor['median']:.2f}x the zstd -3 floor"  # type: ignore[operator]
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="build the benchmark database")
    gen.add_argument("--students", type=int, default=200_000)
    gen.add_argument("--attendance", type=int, default=10_000_000)
    bench = sub.add_parser("run", help="measure every contender and print the table")
    bench.add_argument("--skip-dbbackup", action="store_true")
    bench.add_argument("--skip-restores", action="store_true")
    bench.add_argument(
        "--rounds", type=int, default=3, help="rounds of the dump contenders, interleaved"
    )
    bench.add_argument("--restore-rounds", type=int, default=1, help="rounds of the restores")
    bench.add_argument(
        "--level3", action="store_true", help="also backup_now with BACKUP_ZSTD_LEVEL=3"
    )
    args = parser.parse_args()
    if args.command == "generate":
        generate(students=args.students, attendance=args.attendance)
    else:
        run(
            skip_dbbackup=args.skip_dbbackup,
            skip_restores=args.skip_restores,
            rounds=args.rounds,
            restore_rounds=args.restore_rounds,
            level3=args.level3,
        )


if __name__ == "__main__":
    main()
