"""A platform on a PostgreSQL cluster of its own that archives its WAL through pgBackRest, for
the point-in-time recovery tests: `initdb` in a temporary directory (run as `postgres`, never
the machine's shared cluster), the platform's two roles and database, migrations, a
repository passphrase, `pitr setup`, and `manage.py` run against it as an operator would."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import PYTHON, REPO, free_port, subprocess_env

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OPERATOR = "pitr-operator"
# A fixed TOTP key: the test computes the operator's codes as their phone would.
OPERATOR_KEY = "3132333435363738393031323334353637383930"


def as_postgres(*cmd: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return list(cmd)


def available() -> str:
    """Why these tests cannot run here, or "" when they can."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 server binaries are not in {PG_BIN}"
    if not shutil.which("pgbackrest"):
        return "pgbackrest is not installed (scripts/ensure_services.sh installs it)"
    return ""


@dataclass
class PitrPlatform:
    root: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, user: str = "postgres", dbname: str = "schoolhouse", port: int = 0) -> str:
        password = {"schoolhouse": ":schoolhouse", "schoolhouse_app": ":schoolhouse_app"}.get(
            user, ""
        )
        return f"postgres://{user}{password}@127.0.0.1:{port or self.port}/{dbname}"

    def env(self, **overrides: str) -> dict[str, str]:
        values = dict(
            DATABASE_URL=self.url("schoolhouse_app"),
            DATABASE_MAINTENANCE_URL=self.url("schoolhouse"),
            SCHOOLHOUSE_VAR_DIR=str(self.root / "var"),
            PITR_PG_DATA=str(self.data),
            PITR_PG_PORT=str(self.port),
            PITR_PG_SOCKET=str(self.root),
            PITR_PG_USER="postgres",
            PITR_OS_USER="postgres" if os.geteuid() == 0 else "",
            PITR_CONFIG_DIR=str(self.root / "conf"),
            PITR_LOCAL_DIR=str(self.root / "repo"),
            PITR_CIPHER_PASS_FILE=str(self.root / "keys" / "pitr-passphrase"),
            PITR_RESTORE_DIR=str(self.root / "restores"),
            PITR_ARCHIVE_TIMEOUT="5",
            BACKUP_LOCAL_DIR=str(self.root / "backups"),
            CELERY_TASK_ALWAYS_EAGER="true",
        )
        return subprocess_env(**{**values, **self.extra_env, **overrides})

    def manage(self, *args: str, check: bool = True, timeout: float = 600, **env: str) -> Any:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=REPO,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode:
            command = " ".join(args)
            raise AssertionError(
                f"manage.py {command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def shell(self, code: str, **env: str) -> str:
        """Python in a Django shell as the tables' owner (row-level security does not bind)."""
        return self.manage(
            "shell", "-c", code, DATABASE_URL=self.url("schoolhouse"), **env
        ).stdout.strip()

    def psql(self, sql: str, *, dbname: str = "schoolhouse", port: int = 0) -> str:
        out = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
            + [self.url("postgres", dbname, port), "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.stdout.strip()

    def ctl(self, *args: str, data: Path | None = None, check: bool = True) -> Any:
        return subprocess.run(
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data or self.data))
            + ["-l", str(self.root / "server.log"), "-w", "-t", "60", *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def create(self) -> None:
        subprocess.run(
            as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres")
            + ["-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
            check=True,
            timeout=120,
            capture_output=True,
        )
        self.manage("pitr", "keys", "create")
        config = self.manage("pitr", "config").stdout
        archive_command = next(
            line.split(" = ", 1)[1]
            for line in config.splitlines()
            if line.startswith("archive_") and line.startswith("archive_command")
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                "listen_addresses = '127.0.0.1'\nmax_connections = 40\n"
                "shared_buffers = 32MB\nfsync = off\n"
                "wal_level = replica\narchive_mode = on\narchive_timeout = 5\n"
                f"archive_command = {archive_command}\n"
            )
        self.ctl("start")
        self.psql(
            "CREATE ROLE schoolhouse LOGIN CREATEDB PASSWORD 'schoolhouse'; "
            "CREATE ROLE schoolhouse_app LOGIN PASSWORD 'schoolhouse_app';",
            dbname="postgres",
        )
        self.psql("CREATE DATABASE schoolhouse OWNER schoolhouse", dbname="postgres")
        # pg_create_restore_point is a superuser's function unless granted.
        self.psql("GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO schoolhouse")
        self.psql("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO schoolhouse")
        self.psql("GRANT pg_monitor TO schoolhouse")
        self.manage("migrate", "-v", "0", timeout=900)
        self.shell(
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Group\n"
            "from django_otp.plugins.otp_totp.models import TOTPDevice\n"
            "from students.models import School\n"
            "from students.tenancy import DISTRICT_ADMIN_GROUP\n"
            f"u = get_user_model().objects.create_user('{OPERATOR}', password='x', is_staff=True)\n"
            "u.groups.add(Group.objects.get(name=DISTRICT_ADMIN_GROUP))\n"
            "TOTPDevice.objects.create(user=u, name='phone', confirmed=True, "
            f"key='{OPERATOR_KEY}')\n"
            "School.objects.create(name='North', code='NORTH')\n"
            "School.objects.create(name='South', code='SOUTH')\n"
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ctl("-m", "immediate", "stop", check=False)


_last_step = [0]


def operator_code() -> str:
    """A code the operator's device has not accepted yet: each time step's code is accepted
    once, and one step of drift ahead is tolerated, so after two quick restores this waits
    for the clock."""
    from django_otp.oath import TOTP

    step = max(int(time.time() // 30), _last_step[0] + 1)
    while step > int(time.time() // 30) + 1:
        time.sleep(1)
    _last_step[0] = step
    totp = TOTP(bytes.fromhex(OPERATOR_KEY), 30, 0, 6, 0)
    totp.time = step * 30 + 1
    return f"{totp.token():06d}"


@contextlib.contextmanager
def pitr_platform() -> Iterator[PitrPlatform]:
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # `postgres`, which must own its data directory.
    root = Path(tempfile.mkdtemp(prefix="schoolhouse-pitr-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    platform = PitrPlatform(root=root)
    try:
        platform.create()
        yield platform
    finally:
        platform.stop()
        for leftover in (root / "restores").glob("*"):
            if leftover.is_dir() and (leftover / "postmaster.pid").exists():
                platform.ctl("-m", "immediate", "stop", data=leftover, check=False)
        shutil.rmtree(root, ignore_errors=True)


# --- what the tests do to a platform -------------------------------------------------------
def add_students(p: PitrPlatform, prefix: str, n: int) -> datetime.datetime:
    """n students of North, committed; returns the commit's time (the server's clock)."""
    p.psql(
        "INSERT INTO students_student (school_id, student_number, first_name, middle_name, "
        "last_name, preferred_name, date_of_birth, gender, status, admitted_on, email, phone, "
        "address, medical_notes, notes, created_at, updated_at) "
        f"SELECT s.id, '{prefix}' || g, 'First', '', 'Last' || g, '', '2015-01-01', '', "
        "'active', '2026-09-01', '', '', '', '', '', now(), now() "
        f"FROM students_school s, generate_series(1, {n}) g WHERE s.code = 'NORTH'"
    )
    return datetime.datetime.fromisoformat(p.psql("SELECT clock_timestamp()"))


def count(p: PitrPlatform, prefix: str, port: int = 0) -> int:
    """Students whose number starts with `prefix` (on another port: a restored cluster)."""
    return int(
        p.psql(
            f"SELECT count(*) FROM students_student WHERE student_number LIKE '{prefix}%'",
            port=port,
        )
    )


def restore(p: PitrPlatform, *args: str, check: bool = True) -> Any:
    """`restore_backup ...` as the operator, with a fresh two-factor code."""
    return p.manage(
        "restore_backup",
        *args,
        "--operator",
        OPERATOR,
        "--otp-token",
        operator_code(),
        check=check,
        timeout=900,
    )
