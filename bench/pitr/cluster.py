"""The benchmark's own PostgreSQL 15 cluster, archiving its WAL through pgBackRest as the
platform configures it, holding a copy of the load benchmark's dataset.

`initdb` runs as `postgres` in a directory of this run, on a free port of loopback; the
machine's shared cluster is only read, once, by `pg_dump` of the dataset. `manage.py` runs
against this cluster as an operator would, with a clean environment (no developer `.env`,
no Redis: the file cache of the embedded mode is enough for commands).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python")
PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
SHARED_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
SHARED_PORT = os.environ.get("BENCH_PG_PORT", "5432")
OWNER = "schoolhouse"
APP_ROLE = "schoolhouse_app"
DBNAME = "schoolhouse"
STANZA = "schoolhouse"
OPERATOR = "bench-pitr-operator"
# A fixed TOTP key: the benchmark computes the operator's codes as their phone would.
OPERATOR_KEY = "3132333435363738393031323334353637383930"
# The operator's backup codes (8 letters and digits, each accepted once, at any time):
# recover_server checks the code only after the restore and the replay, minutes after it
# was typed, when an authenticator's code has long expired.
BACKUP_CODES = ("rpo4pitr", "rpo5pitr", "rpo6pitr")
SECRET_KEY = "bench-pitr-only-not-secret-0123456789-0123456789-0123456789"  # noqa: S105


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_postgres(*cmd: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return list(cmd)


def available() -> str:
    """Why the benchmark cannot run here, or ""."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 server binaries are not in {PG_BIN}"
    if not shutil.which("pgbackrest"):
        return "pgbackrest is not installed"
    return ""


class Totp:
    """The operator's authenticator: RFC 6238 codes (SHA-1, 6 digits, 30 s). Each time step's
    code is accepted once by the platform and one step of drift ahead is tolerated, so a
    new code is taken from a step not used before, waiting for the clock when needed."""

    def __init__(self, key_hex: str = OPERATOR_KEY) -> None:
        self.key = bytes.fromhex(key_hex)
        self.last_step = 0

    def code(self) -> str:
        step = max(int(time.time() // 30), self.last_step + 1)
        while step > int(time.time() // 30) + 1:
            time.sleep(1)
        self.last_step = step
        digest = hmac.new(self.key, struct.pack(">Q", step), hashlib.sha1).digest()
        offset = digest[-1] & 0x0F
        value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
        return f"{value % 1_000_000:06d}"


@dataclass
class BenchCluster:
    root: Path
    archive_timeout: int
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "conf"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, user: str = "postgres", dbname: str = DBNAME) -> str:
        password = f":{user}" if user in {OWNER, APP_ROLE} else ""
        return f"postgres://{user}{password}@127.0.0.1:{self.port}/{dbname}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The platform's environment for this cluster: two roles, PITR on (a local
        repository), logical backups to a local directory, production-like (DEBUG off)."""
        kept = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("DJANGO_", "SCHOOLHOUSE_", "DB_", "REDIS_", "CELERY_", "CACHE_", "PITR_")
            )
            and not k.startswith(("BACKUP_", "DATABASE_", "PYTEST_", "PG"))
            and k not in {"DEBUG", "SECRET_KEY"}
        }
        kept.update(
            DJANGO_SETTINGS_MODULE="school_site.settings",
            DATABASE_URL=self.url(APP_ROLE),
            DATABASE_MAINTENANCE_URL=self.url(OWNER),
            SCHOOLHOUSE_VAR_DIR=str(self.root / "var"),
            SCHOOLHOUSE_ENV_FILE=str(self.root / "no.env"),
            SECRET_KEY=SECRET_KEY,
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            CELERY_TASK_ALWAYS_EAGER="true",
            EMAIL_URL="memorymail://",
            LOG_LEVEL="WARNING",
            PITR_PG_DATA=str(self.data),
            PITR_PG_PORT=str(self.port),
            PITR_PG_SOCKET=str(self.root),
            PITR_PG_USER="postgres",
            PITR_OS_USER="postgres" if os.geteuid() == 0 else "",
            PITR_CONFIG_DIR=str(self.config),
            PITR_LOCAL_DIR=str(self.root / "repo"),
            PITR_CIPHER_PASS_FILE=str(self.root / "keys" / "pitr-passphrase"),
            PITR_RESTORE_DIR=str(self.root / "restores"),
            PITR_ARCHIVE_TIMEOUT=str(self.archive_timeout),
            BACKUP_DESTINATIONS="local",
            BACKUP_LOCAL_DIR=str(self.root / "backups"),
            BACKUP_KEYSET_PATH=str(self.root / "keys" / "backup-keyset.json"),
            PYTHONUNBUFFERED="1",
        )
        kept.update(overrides)
        return kept

    def manage_cmd(self, *args: str) -> list[str]:
        return [PY, "manage.py", *args]

    def manage(self, *args: str, timeout: float = 3600, **env: str) -> str:
        done = subprocess.run(
            self.manage_cmd(*args),
            cwd=REPO,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode:
            raise RuntimeError(
                f"manage.py {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def pgbackrest_cmd(self, *args: str) -> list[str]:
        """The command the platform runs (backups.pgbackrest.base_command), by hand."""
        return as_postgres(
            "pgbackrest",
            f"--config={self.config / 'pgbackrest.conf'}",
            f"--config-include-path={self.config / 'conf.d'}",
            f"--stanza={STANZA}",
            *args,
        )

    def connect(self, dbname: str = DBNAME, user: str = "postgres", **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(self.url(user, dbname), autocommit=True, **kwargs)

    def sql(self, query: str, dbname: str = DBNAME) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cursor = conn.execute(query)
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, dbname: str = DBNAME) -> Any:
        rows = self.sql(query, dbname)
        return rows[0][0] if rows else None

    def ctl(self, *args: str, data: Path | None = None, check: bool = True) -> Any:
        return subprocess.run(
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data or self.data))
            + ["-l", str(self.log), "-w", "-t", "600", *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=900,
        )

    # --- building it ----------------------------------------------------------------------
    def create(self) -> None:
        """initdb, the platform's roles and empty database, archiving configured but off
        (the dataset is loaded first: its WAL need not go through the archive)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres")
            + ["-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True,
            timeout=300,
            capture_output=True,
        )
        self.manage("pitr", "keys", "create")
        self.manage("backup_keys", "create")
        config = self.manage("pitr", "config")
        archive_command = next(
            line.split(" = ", 1)[1]
            for line in config.splitlines()
            if line.startswith("archive_command")
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            # fsync stays on: restores and backups are timed as a real server does them.
            conf.write(
                f"\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                "listen_addresses = '127.0.0.1'\nmax_connections = 50\n"
                "shared_buffers = 128MB\nmaintenance_work_mem = 256MB\n"
                "max_wal_size = 2GB\n"
                f"wal_level = replica\narchive_timeout = {self.archive_timeout}\n"
                f"archive_command = {archive_command}\narchive_mode = off\n"
            )
        self.ctl("start")
        self.sql(
            f"CREATE ROLE {OWNER} LOGIN CREATEDB PASSWORD '{OWNER}'; "
            f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}';",
            "postgres",
        )
        self.sql(f"CREATE DATABASE {DBNAME} OWNER {OWNER}", "postgres")
        # What the platform's maintenance role is granted on a PITR install.
        self.sql(
            f"GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO {OWNER}; "
            f"GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {OWNER}; "
            f"GRANT pg_monitor TO {OWNER};"
        )

    def copy_dataset(self, source_db: str) -> None:
        """The load benchmark's database, dumped from the shared cluster (read only) and
        restored here with its owners and grants, then migrated to this code."""
        dump = self.root / "source.dump"
        env = {**os.environ, "PGPASSWORD": OWNER}
        subprocess.run(
            ["pg_dump", "-Fc", "-Z", "1", "-h", SHARED_HOST, "-p", SHARED_PORT, "-U", OWNER]
            + ["-d", source_db, "-f", str(dump)],
            check=True,
            env=env,
            timeout=3600,
        )
        subprocess.run(
            ["pg_restore", "-j", "2", "--exit-on-error", "-d", self.url("postgres"), str(dump)],
            check=True,
            timeout=3600,
        )
        dump.unlink()
        self.manage("migrate", "-v", "0", timeout=1800)

    def add_operator(self) -> None:
        """A district administrator with an authenticator and a backup code: restores ask
        for a code."""
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Group\n"
            "from django_otp.plugins.otp_static.models import StaticDevice\n"
            "from django_otp.plugins.otp_totp.models import TOTPDevice\n"
            "from students.tenancy import DISTRICT_ADMIN_GROUP\n"
            f"u = get_user_model().objects.create_user('{OPERATOR}', password=None, "
            "is_staff=True)\n"
            "u.groups.add(Group.objects.get(name=DISTRICT_ADMIN_GROUP))\n"
            "TOTPDevice.objects.create(user=u, name='phone', confirmed=True, "
            f"key='{OPERATOR_KEY}')\n"
            "backup = StaticDevice.objects.create(user=u, name='backup', confirmed=True)\n"
            f"for code in {list(BACKUP_CODES)!r}: backup.token_set.create(token=code)",
            DATABASE_URL=self.url(OWNER),
        )

    def grow(self, extra_periods: int) -> int:
        """Period attendance on top of the whole-day marks: each whole-day row (period 0)
        copied as periods 1..N, as a secondary school records each lesson. The rows are
        copies of valid ones, so the foreign-key triggers are skipped
        (session_replication_role) and the secondary indexes rebuilt after the load, as a
        bulk load does. Returns the rows added."""
        if extra_periods <= 0:
            return 0
        table = "students_attendancerecord"
        with self.connect() as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint) ",
                [table],
            ).fetchall()
            constraints = conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'u'",
                [table],
            ).fetchall()
            for name, _definition in constraints:
                conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _definition in indexes:
                if not name.endswith("_pkey"):
                    conn.execute(f'DROP INDEX "{name}"')
            conn.execute("SET session_replication_role = replica")
            added = conn.execute(
                f"INSERT INTO {table} (date, period, status, note, recorded_at, recorded_by_id, "
                "school_id, section_id, student_id) SELECT a.date, p, a.status, a.note, "
                "a.recorded_at, a.recorded_by_id, a.school_id, a.section_id, a.student_id "
                f"FROM {table} a, generate_series(1, %s) p WHERE a.period = 0",
                [extra_periods],
            ).rowcount
            conn.execute("SET session_replication_role = DEFAULT")
            for name, definition in indexes:
                if not name.endswith("_pkey"):
                    conn.execute(definition)
            for name, definition in constraints:
                conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        return int(added)

    def settle_dataset(self) -> None:
        """Hint bits set and statistics gathered now, as on a server that has run a while:
        otherwise the first reads during the measured steps would write them."""
        with self.connect() as conn:
            conn.execute("VACUUM (FREEZE, ANALYZE)")
            conn.execute("CHECKPOINT")

    def archiving_on(self) -> None:
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("archive_mode = on\n")
        self.ctl("-m", "fast", "restart")
        self.manage("pitr", "setup")

    def database_size(self, dbname: str = DBNAME) -> int:
        return int(self.value(f"SELECT pg_database_size('{dbname}')"))

    def wal_lsn(self) -> str:
        return str(self.value("SELECT pg_current_wal_lsn()"))

    def wal_bytes_since(self, lsn: str) -> int:
        return int(self.value(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')"))

    def archive_settle(self, timeout: float = 600) -> float:
        """Close the current WAL segment, wait until the archiver has pushed it, and
        checkpoint, so the next measured step starts with no archiving owed. Returns the
        seconds waited."""
        clock = time.monotonic()
        with self.connect() as conn:
            segment = conn.execute(
                "SELECT pg_walfile_name(pg_current_wal_lsn()) FROM pg_switch_wal()"
            ).fetchone()[0]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = conn.execute(
                    "SELECT coalesce(last_archived_wal, '') >= %s FROM pg_stat_archiver",
                    [segment],
                ).fetchone()[0]
                if done:
                    break
                time.sleep(0.5)
            conn.execute("CHECKPOINT")
        return round(time.monotonic() - clock, 1)

    def last_archived_age(self) -> float | None:
        return self.value(
            "SELECT extract(epoch FROM now() - last_archived_time)::float FROM pg_stat_archiver"
        )

    # --- losing it ----------------------------------------------------------------------
    def postmaster_pid(self, data: Path | None = None) -> int | None:
        pid_file = (data or self.data) / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pid_file.read_text().splitlines()[0])
        return None

    def kill(self) -> float:
        """SIGKILL the postmaster and every process of the server at once (the machine is
        lost); returns the moment, epoch seconds."""
        import psutil

        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("the cluster is not running")
        server = psutil.Process(pid)
        children = server.children(recursive=True)
        moment = time.time()
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        return moment

    def stop(self, data: Path | None = None) -> None:
        with contextlib.suppress(Exception):
            self.ctl("-m", "fast", "stop", data=data, check=False)

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")
