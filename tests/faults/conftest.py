"""Throwaway service instances for the fault-injection tests, and the tools to break them.

Every fault test starts its own redis-server, PostgreSQL cluster, moto S3 server or small
tmpfs, and kills or fills only those: the machine's shared PostgreSQL (5432) and Redis (6379)
are never touched. Servers run as child processes of the test, so a `SIGKILL` is a real crash
(no clean shutdown, sockets reset), not a polite stop.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import REPO, free_port, subprocess_env

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# A production-like web process: no test switches, no TLS redirect (plain HTTP on loopback).
WEB_ENV = {
    "SCHOOLHOUSE_TESTING": "false",
    "DEBUG": "false",
    "SECRET_KEY": "fault-tests-" + "k" * 60,
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "STATIC_MANIFEST": "false",
    "LOG_FORMAT": "console",
    "LOG_LEVEL": "WARNING",
}


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(step)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGKILL) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------
@dataclass
class RedisServer:
    """A redis-server child process on a port of its own; no persistence, like a cache."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), timeout=10, what="redis-server")

    def kill(self) -> None:
        """A crash: SIGKILL, every client socket reset, every key gone."""
        stop_process(self.proc, signal.SIGKILL)

    def _client(self, db: int) -> Any:
        import redis

        return redis.Redis.from_url(self.url(db), socket_timeout=2)

    def keys(self, db: int, pattern: str = "*") -> list[str]:
        with self._client(db) as client:
            return [k.decode() for k in client.keys(pattern)]

    def llen(self, db: int, key: str) -> int:
        """Messages waiting in a Celery queue (a Redis list)."""
        with self._client(db) as client:
            return int(client.llen(key))


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.kill()


# ---------------------------------------------------------------------------------------------
# moto's S3 server, as a process we can kill
# ---------------------------------------------------------------------------------------------
@dataclass
class MotoServer:
    """moto_server in a child process (in memory: a restart forgets every bucket)."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), timeout=30, what="moto_server")

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        from tests.emulators import REGION, S3_KEY, S3_SECRET

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=10),
        )

    def uploads_in_progress(self, bucket: str) -> list[dict]:
        return list(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def parts_received(self, bucket: str) -> int:
        """Parts stored so far by the multipart uploads in progress."""
        client = self.client()
        return sum(
            len(client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])["Parts"])
            for u in self.uploads_in_progress(bucket)
        )

    def keys(self, bucket: str) -> dict[str, int]:
        page = self.client().list_objects_v2(Bucket=bucket)
        return {o["Key"]: int(o["Size"]) for o in page.get("Contents", [])}

    def kill_when(self, condition: Callable[[], bool], *, timeout: float = 60) -> threading.Thread:
        """Kill the server from a background thread as soon as `condition()` holds (polled)."""

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if condition():
                        break
                time.sleep(0.02)
            self.kill()

        thread = threading.Thread(target=watch, name="moto-killer", daemon=True)
        thread.start()
        return thread


@pytest.fixture
def throwaway_moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.kill()


# ---------------------------------------------------------------------------------------------
# A PostgreSQL cluster of our own (initdb in a temporary directory, run as `postgres`)
# ---------------------------------------------------------------------------------------------
def _as_postgres(*cmd: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return list(cmd)


@dataclass
class PostgresCluster:
    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"))
            + ["-w", "-t", "30", *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )

    def init(self) -> None:
        subprocess.run(
            _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres")
            + ["-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=60 -c shared_buffers=32MB "
            # A throwaway cluster: no fsync (a clean `restart -m fast` still writes every
            # committed row out at its shutdown checkpoint; only an OS crash would lose them).
            "-c fsync=off -c full_page_writes=off"
        )
        self._ctl("-o", options, "start")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: open sessions are cut, committed work is kept."""
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("-m", "immediate", "stop")

    def psql(self, dbname: str, sql: str) -> str:
        out = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.url(dbname)]
            + ["-c", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()


@pytest.fixture
def throwaway_postgres() -> Iterator[PostgresCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 server binaries are not installed in {PG_BIN}")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # `postgres`, which must own its data directory.
    root = Path(tempfile.mkdtemp(prefix="schoolhouse-faults-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PostgresCluster(root=root)
    cluster.init()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# A small filesystem that fills up
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """An 8 MiB tmpfs (root may mount one; CI runs as root), or a loop-mounted 8 MiB ext4
    image where tmpfs is not allowed. Unmounted afterwards."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    attempts = [["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mount_point)]]
    image = tmp_path / "small-disk.img"
    errors = []
    mounted = False
    for cmd in attempts:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            mounted = True
            break
        errors.append(done.stderr.strip())
    if not mounted:
        with open(image, "wb") as fh:
            fh.truncate(8 * 1024 * 1024)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
        loop = subprocess.run(
            ["mount", "-o", "loop", str(image), str(mount_point)], capture_output=True, text=True
        )
        mounted = made.returncode == 0 and loop.returncode == 0
        errors += [made.stderr.strip(), loop.stderr.strip()]
    if not mounted:
        pytest.skip(f"cannot mount a small filesystem here (needs root): {'; '.join(errors)}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


# ---------------------------------------------------------------------------------------------
# Data big enough that a backup takes a few seconds
# ---------------------------------------------------------------------------------------------
FILLER_TABLE = "fault_filler"


@pytest.fixture(scope="session")
def filler_table(django_db_setup, django_db_blocker) -> Iterator[str]:
    """About 29 MB of hard-to-compress text (md5 hex) in the test database, created once.
    Not a Django model, so the flush between transactional tests leaves it in place."""
    from tests.helpers import maintenance_cursor

    # The application's role creates no tables: the maintenance role (the owner) does.
    with django_db_blocker.unblock():
        with maintenance_cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FILLER_TABLE}")
            cur.execute(
                f"CREATE TABLE {FILLER_TABLE} AS SELECT g AS id, md5(g::text) || "  # noqa: S608
                "md5((g * 7)::text) || md5((g * 13)::text) AS junk "
                "FROM generate_series(1, 300000) g"
            )
    yield FILLER_TABLE
    with django_db_blocker.unblock():
        with maintenance_cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FILLER_TABLE}")


# Tables a backup writes to (its run row, the audit trail, request figures): everything else
# must read exactly the same after a failed backup.
BOOKKEEPING = ("backups_", "audit_", "auditlog_", "monitoring_", "django_celery")


def school_digests() -> dict[str, str]:
    """md5 of every school-data table of the test database (bookkeeping tables left out)."""
    from tests.backups.conftest import live_params, table_digests

    digests = table_digests(live_params(), skip={FILLER_TABLE})
    return {t: d for t, d in digests.items() if not t.startswith(BOOKKEEPING)}


# ---------------------------------------------------------------------------------------------
# gunicorn and a logged-in browser-like client
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_gunicorn(log_path: Path, **env: str) -> Iterator[str]:
    """gunicorn with the production config (docker/gunicorn.conf.py): 2 gthread workers."""
    port = free_port()
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            ["gunicorn", "-c", "docker/gunicorn.conf.py", "school_site.wsgi"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(
                GUNICORN_BIND=f"127.0.0.1:{port}",
                GUNICORN_WORKERS="2",
                GUNICORN_THREADS="4",
                GUNICORN_MAX_REQUESTS="0",
                **{**WEB_ENV, **env},
            ),
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
                try:
                    return requests.get(f"{base}/health/live/", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            wait_for(up, timeout=60, what="gunicorn", step=0.2)
            yield base
        finally:
            stop_process(proc, signal.SIGINT)  # gunicorn's quick shutdown


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class StaffClient:
    """A staff member's browser: a cookie jar, CSRF tokens, no automatic redirects."""

    def __init__(self, base: str, timeout: float = 30) -> None:
        self.base = base
        self.timeout = timeout  # a request stalled longer than this fails the test
        self.session = requests.Session()

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.base + path, allow_redirects=False, timeout=self.timeout, **kw)

    def post(self, path: str, data: dict[str, Any], **kw: Any) -> requests.Response:
        token = self.session.cookies.get("csrftoken", "")
        return self.session.post(
            self.base + path,
            data={"csrfmiddlewaretoken": token, **data},
            allow_redirects=False,
            timeout=self.timeout,
            **kw,
        )

    def login(self, username: str, password: str) -> None:
        page = self.get("/accounts/login/")
        assert page.status_code == 200, page.text[:500]
        answer = self.post("/accounts/login/", {"username": username, "password": password})
        assert answer.status_code == 302, answer.text[:2000]
        assert "/accounts/login/" not in answer.headers["Location"]

    @property
    def session_key(self) -> str:
        return self.session.cookies.get("sessionid", "")
