"""The benchmark's own services: a PostgreSQL database on the shared server, a throwaway
redis-server, and gunicorn with production settings. Shared by the load run and the soak run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python")
BIN = REPO / ".venv" / "bin"
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
LOAD_DB = os.environ.get("BENCH_LOAD_DB", "schoolhouse_load")
OWNER = "schoolhouse"
VAR = REPO / "var" / "bench_load"
RESULTS = REPO / "bench" / "results"
SCHOOLS = 10
STUDENTS_PER_SCHOOL = 2000
# Accounts are made by bench.load.prepare (sessions, no password login); the demo password
# only matters to someone who wants to look at the benchmark data in a browser.
DEMO_PASSWORD = "bench-load-demo-password"  # noqa: S105 - benchmark data on loopback only

# Gunicorn as docker/gunicorn.conf.py runs it in production: 2 x cores + 1 workers of one
# thread each (see BENCHMARKS.md "## Load"). More threads a worker serve the same requests/s
# but share its GIL: a thread back from PostgreSQL or Redis waits for the GIL behind threads
# busy in Python (up to 5 ms a switch), once per query, and p95 at 500 users was 2-6x worse.
WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", str(2 * len(os.sched_getaffinity(0)) + 1)))
THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "1"))


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def db_url(name: str = LOAD_DB) -> str:
    return f"postgres://{OWNER}:{OWNER}@{PG_HOST}:{PG_PORT}/{name}"


def psql(sql: str, *, db: str = "postgres") -> str:
    result = subprocess.run(
        ["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", "postgres", "-d", db]
        + ["-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def _secret_key() -> str:
    # Kept between runs: sessions made by `prepare` must stay valid for the servers.
    path = VAR / "secret_key"
    if not path.exists():
        VAR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def app_env(redis_port: int, **extra: str) -> dict[str, str]:
    """Production settings on loopback: DEBUG off, a real SECRET_KEY, PostgreSQL and Redis.
    Only TLS is off (no TLS on loopback), so HTTPS redirects and secure-only cookies too."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "SCHOOLHOUSE_", "DB_", "REDIS_", "CELERY_", "CACHE_"))
        and k not in {"DATABASE_URL", "DEBUG", "SECRET_KEY", "PYTEST_ADDOPTS"}
    }
    env.update(
        DATABASE_URL=db_url(),
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/1",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/2",
        CELERY_RESULT_BACKEND=f"redis://127.0.0.1:{redis_port}/2",
        SECRET_KEY=_secret_key(),
        DEBUG="false",
        SCHOOLHOUSE_VAR_DIR=str(VAR),
        STATIC_ROOT=str(VAR / "static"),
        SCHOOLHOUSE_ENV_FILE=str(VAR / "no.env"),  # never the developer's .env
        DEMO_PASSWORD=DEMO_PASSWORD,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
        # Each worker's pool: threads + 1 (the request stats flush uses its own connection).
        DB_POOL_MIN_SIZE="2",
        DB_POOL_MAX_SIZE=str(THREADS + 2),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, quiet: bool = False) -> str:
    result = subprocess.run(
        [PY, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"manage.py {' '.join(args)} failed")
    if not quiet and result.stdout.strip():
        print(result.stdout.rstrip(), flush=True)
    return result.stdout


@dataclass
class Redis:
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Redis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.1)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Gunicorn:
    name: str
    env: dict[str, str]
    workers: int = WORKERS
    threads: int = THREADS
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gunicorn:
        prom = VAR / f"prometheus-{self.name}"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        env = {
            **self.env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            "GUNICORN_LOG_LEVEL": "warning",
            # As behind docker/nginx.conf, which opens a connection to gunicorn per request
            # (no upstream keep-alive): the first free worker takes each request. A client's
            # kept-alive connection stays with one worker, and its requests wait behind that
            # worker's slow ones while others idle (p95 at 500 users: 160 ms against 96 ms).
            "GUNICORN_KEEPALIVE": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(prom),
        }
        log = open(VAR / f"gunicorn-{self.name}.log", "wb")  # noqa: SIM115 - lives with proc
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "docker/gunicorn.conf.py", "school_site.wsgi:application"]
            + ["--access-logfile", str(VAR / f"access-{self.name}.log")],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn {self.name} exited: see {log.name}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/health/live/", timeout=2):  # noqa: S310
                    return self
            time.sleep(0.3)
        raise SystemExit(f"gunicorn {self.name} did not answer: see {log.name}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def metrics(self) -> str:
        """The Prometheus exposition; waits for a server still draining a backlog."""
        for attempt in range(5):
            try:
                with urllib.request.urlopen(f"{self.url}/metrics", timeout=60) as r:  # noqa: S310
                    return r.read().decode()
            except OSError:
                if attempt == 4:
                    raise
                time.sleep(5)
        raise AssertionError("unreachable")


def dataset_ready(env: dict[str, str]) -> bool:
    exists = psql(f"SELECT 1 FROM pg_database WHERE datname = '{LOAD_DB}'")
    if not exists:
        return False
    try:
        counts = psql(
            "SELECT (SELECT count(*) FROM students_school), (SELECT count(*) FROM "
            "students_student)",
            db=LOAD_DB,
        )
    except subprocess.CalledProcessError:
        return False
    schools, students = (int(x) for x in counts.split("|"))
    return schools >= SCHOOLS and students >= SCHOOLS * STUDENTS_PER_SCHOOL


def dataset_ensure(env: dict[str, str], *, reseed: bool) -> None:
    """The benchmark database: migrated, seeded once (10 schools x 2,000 students, the school
    year so far of attendance and grades), reused by later runs unless `reseed`."""
    if reseed:
        psql(f'DROP DATABASE IF EXISTS "{LOAD_DB}" WITH (FORCE)')
    if not psql(f"SELECT 1 FROM pg_database WHERE datname = '{LOAD_DB}'"):
        psql(f'CREATE DATABASE "{LOAD_DB}" OWNER {OWNER}')
    say("migrate")
    manage(env, "migrate", "-v", "0")
    if dataset_ready(env):
        say(f"dataset: reusing {LOAD_DB} (pass --reseed to rebuild it)")
    else:
        say("dataset: seeding (about 2 minutes)")
        manage(
            env,
            "seed_demo",
            "--schools",
            str(SCHOOLS),
            "--students",
            str(STUDENTS_PER_SCHOOL),
            "--if-empty",
        )
    # Planner statistics, as autovacuum would gather them a while after a bulk load. Without
    # them PostgreSQL guesses a handful of rows per school and scans whole tables (student
    # search went from ~50 ms to ~28 ms idle once the tables were analysed).
    say("analyze")
    psql("ANALYZE", db=LOAD_DB)
    if _static_stale():
        say("collectstatic (compressing takes a minute or two)")
        manage(env, "collectstatic", "--noinput", "-v", "0")


def _static_stale() -> bool:
    """Whether the project's static sources changed since the last collectstatic (installed
    packages' files are taken as they were: `--reseed` or deleting var/bench_load redoes it)."""
    manifest = VAR / "static" / "staticfiles.json"
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [*REPO.glob("static/**/*"), *REPO.glob("*/static/**/*")]
    return any(p.stat().st_mtime > built for p in sources if p.is_file())


def prepare_accounts(env: dict[str, str], users: int, out: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [PY, "-m", "bench.load.prepare", "accounts", "--users", str(users), "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit("preparing accounts failed")
    print(result.stdout.strip(), flush=True)
    return json.loads(out.read_text())


def machine() -> dict[str, object]:
    import psutil

    load = os.getloadavg()
    return {
        "cores": psutil.cpu_count(logical=True),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"
