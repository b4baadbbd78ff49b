"""Benchmark: moving an embedded (SQLite) installation to PostgreSQL, side by side.

    python -m bench.sqlite_migration [--schools 10] [--students 2000] [--loaddata-students 300]

Builds a SQLite database with `seed_demo` (10 schools x 2,000 students with the school year
of attendance so far: about 1.6 million rows), then loads it into fresh PostgreSQL
databases with
  1. `manage.py migrate_from_sqlite` (schema, COPY, index rebuild, foreign keys, sequences,
     row counts and per-table SHA-256 verification: all included in the time);
  2. pgloader, data only, into the schema Django's migrations created (pgloader's own schema
     would drop Django's NOT NULL and CHECK constraints and types, so only data-only is fair);
     the `migrate` it needs first is timed separately;
  3. Django's `dumpdata` / `loaddata` on a smaller database (it is too slow for the full one:
     its rate is measured, and its memory growth shown).
Prints a Markdown table (rows/s, wall time, peak RSS of the whole process tree) to paste into
BENCHMARKS.md. Loopback only; needs PostgreSQL on 127.0.0.1 and Debian's pgloader.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG = {"host": "127.0.0.1", "port": "5432", "user": "schoolhouse", "password": "schoolhouse"}


@dataclass
class Measured:
    name: str
    rows: int
    seconds: float
    peak_rss_mb: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def run_measured(args: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, float]:
    """Wall time and the peak summed RSS of the process and all its children."""
    started = time.monotonic()
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    reader.start()
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    reader.join()
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write("".join(output[-40:]))
        raise SystemExit(f"{args[:3]} failed with {proc.returncode}")
    return seconds, peak / 1_048_576


def django_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DEBUG": "true",
            "LOG_LEVEL": "WARNING",
            "SCHOOLHOUSE_ENV_FILE": "/nonexistent",
            "REDIS_URL": "",
            "CELERY_BROKER_URL": "",
            "CELERY_RESULT_BACKEND": "",
        }
    )
    env.update(extra)
    return env


def pg_url(db: str, user: str = "schoolhouse") -> str:
    return f"postgres://{user}:{PG['password']}@{PG['host']}:{PG['port']}/{db}"


def psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-q", "-h", PG["host"], "-U", "schoolhouse", "-d", db, "-c", sql],
        check=True,
        env={**os.environ, "PGPASSWORD": PG["password"]},
    )


def fresh_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')


def count_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    tables = [
        r[0]
        for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    total = sum(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)
    db.close()
    return total


def build_sqlite(var: Path, schools: int, students: int) -> Path:
    env = django_env(SCHOOLHOUSE_VAR_DIR=str(var), DATABASE_URL="")
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True
    )
    subprocess.run(
        [PYTHON, "manage.py", "setup_periodic_tasks", "-v0"], cwd=REPO, env=env, check=True
    )
    subprocess.run(
        [PYTHON, "manage.py", "seed_demo", "--schools", str(schools), "--students", str(students)],
        cwd=REPO,
        env=env,
        check=True,
    )
    return var / "db.sqlite3"


def bench_ours(sqlite_path: Path, rows: int, workdir: Path, *, premigrated: bool) -> Measured:
    """Into an empty database (the command creates the schema in its transaction), or, like
    pgloader's data-only load, into a schema `migrate` made beforehand (timed apart)."""
    fresh_database("bench_upgrade_ours")
    env = django_env(
        DATABASE_URL=pg_url("bench_upgrade_ours"),
        DB_POOL="false",
        SCHOOLHOUSE_VAR_DIR=str(workdir / "var-ours"),
    )
    if premigrated:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True
        )
    seconds, rss = run_measured(
        [
            PYTHON,
            "manage.py",
            "migrate_from_sqlite",
            "--sqlite-path",
            str(sqlite_path),
            "--backup-dir",
            str(workdir / "bak"),
            "--truncate",
            "-v0",
        ],
        env,
    )
    what = "into the migrated schema" if premigrated else "into an empty database, schema included"
    return Measured(f"migrate_from_sqlite, {what} (copy + verify)", rows, seconds, rss)


PGLOADER = """LOAD DATABASE
  FROM sqlite://{sqlite}
  INTO postgresql://postgres@127.0.0.1:5432/{db}
WITH data only, truncate, disable triggers, reset sequences, workers = 2, concurrency = 1
EXCLUDING TABLE NAMES LIKE 'django_migrations', 'sqlite_sequence'
SET work_mem to '64MB', maintenance_work_mem to '256MB';
"""


def bench_pgloader(sqlite_path: Path, rows: int, workdir: Path) -> tuple[Measured, Measured]:
    if shutil.which("pgloader") is None:
        raise SystemExit("pgloader is not installed: apt-get install pgloader")
    fresh_database("bench_upgrade_pgloader")
    env = django_env(
        DATABASE_URL=pg_url("bench_upgrade_pgloader"),
        DB_POOL="false",
        SCHOOLHOUSE_VAR_DIR=str(workdir / "var-pgl"),
    )
    schema_s, schema_rss = run_measured([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], env)
    load = workdir / "load.pgl"
    load.write_text(PGLOADER.format(sqlite=sqlite_path, db="bench_upgrade_pgloader"))
    seconds, rss = run_measured(
        ["pgloader", "--no-ssl-cert-verification", str(load)], dict(os.environ)
    )
    return (
        Measured("pgloader, data only (no verification)", rows, seconds, rss),
        Measured(
            "  (Django migrate for pgloader's schema, not counted above)", 0, schema_s, schema_rss
        ),
    )


def bench_dumpdata(workdir: Path, students: int) -> Measured:
    small = build_sqlite(workdir / "var-small", 1, students)
    rows = count_rows(small)
    src_env = django_env(SCHOOLHOUSE_VAR_DIR=str(workdir / "var-small"), DATABASE_URL="")
    dump = workdir / "dump.json"
    d_seconds, d_rss = run_measured(
        [
            PYTHON,
            "manage.py",
            "dumpdata",
            "--natural-foreign",
            "--exclude",
            "contenttypes",
            "--exclude",
            "auth.permission",
            "-o",
            str(dump),
        ],
        src_env,
    )
    fresh_database("bench_upgrade_loaddata")
    env = django_env(
        DATABASE_URL=pg_url("bench_upgrade_loaddata"),
        DB_POOL="false",
        SCHOOLHOUSE_VAR_DIR=str(workdir / "var-ld"),
    )
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True
    )
    psql("TRUNCATE auth_group CASCADE", "bench_upgrade_loaddata")
    l_seconds, l_rss = run_measured([PYTHON, "manage.py", "loaddata", str(dump)], env)
    return Measured(
        "dumpdata + loaddata (no verification)",
        rows,
        d_seconds + l_seconds,
        max(d_rss, l_rss),
        note=f"on a {rows:,}-row database",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--loaddata-students", type=int, default=300)
    parser.add_argument("--skip-loaddata", action="store_true")
    parser.add_argument(
        "--sqlite-path",
        type=Path,
        default=None,
        help="Reuse this SQLite database instead of building one.",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-upgrade-"))
    if args.sqlite_path:
        sqlite_path = args.sqlite_path.resolve()
    else:
        print(f"building the SQLite database in {workdir} ...", flush=True)
        sqlite_path = build_sqlite(workdir / "var", args.schools, args.students)
    rows = count_rows(sqlite_path)
    size = sqlite_path.stat().st_size / 1_048_576
    print(f"{rows:,} rows, {size:,.0f} MB", flush=True)
    results = [
        bench_ours(sqlite_path, rows, workdir, premigrated=False),
        bench_ours(sqlite_path, rows, workdir, premigrated=True),
        *bench_pgloader(sqlite_path, rows, workdir),
    ]
    if not args.skip_loaddata:
        results.append(bench_dumpdata(workdir, args.loaddata_students))
    cpu = platform.processor() or platform.machine()
    mem = psutil.virtual_memory().total / 2**30
    print(
        f"\nMachine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, PostgreSQL on loopback; "
        f"SQLite source {rows:,} rows, {size:,.0f} MB\n"
    )
    print("| method | rows | wall time | rows/s | peak RSS | note |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        rate = f"{r.rate:,.0f}" if r.rows else ""
        rows_cell = f"{r.rows:,}" if r.rows else ""
        print(
            f"| {r.name} | {rows_cell} | {r.seconds:.1f} s | {rate} | "
            f"{r.peak_rss_mb:,.0f} MB | {r.note} |"
        )
    shutil.rmtree(workdir, ignore_errors=True)
    for db in ("bench_upgrade_ours", "bench_upgrade_pgloader", "bench_upgrade_loaddata"):
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
