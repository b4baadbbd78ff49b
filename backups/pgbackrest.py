"""pgBackRest, as the platform drives it: its configuration, generated from settings, and the
one way to run it.

pgBackRest does the real work (WAL archiving, physical backups, restores; compression,
encryption, repositories on disk, S3 and GCS). This module only writes what it reads and
runs it as the operating-system user that owns the data directory (PITR_OS_USER), since
PostgreSQL's own `archive_command` runs it as that user and both must share the repository
and its lock files.

The configuration is two files in PITR_CONFIG_DIR: `pgbackrest.conf` (no secrets, readable)
and `conf.d/secrets.conf` (mode 0600: the repository passphrase and the object stores'
keys), written by `manage.py pitr setup` and again whenever a setting changes.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

REPO_TYPES = {"local": "posix", "s3": "s3", "gcs": "gcs"}
# pgBackRest's "detail" console lines end with the share of the job done: "(12.3 MB, 45.67%)".
PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)%\)\s*(?:checksum [0-9a-f]+)?\s*$")


class PgBackRestError(RuntimeError):
    """pgBackRest exited non-zero; the message is its own error lines."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Repo:
    index: int  # repo1, repo2...
    kind: str  # local, s3, gcs

    @property
    def name(self) -> str:
        return f"repo{self.index}"


def repos() -> list[Repo]:
    return [Repo(index=i, kind=kind) for i, kind in enumerate(settings.PITR_REPOS, start=1)]


def config_path() -> Path:
    return settings.PITR_CONFIG_DIR / "pgbackrest.conf"


def secrets_path() -> Path:
    return settings.PITR_CONFIG_DIR / "conf.d" / "secrets.conf"


def _host_port(endpoint: str) -> tuple[str, int | None]:
    host, _, port = endpoint.rpartition(":") if ":" in endpoint else (endpoint, "", "")
    return (host, int(port)) if port.isdigit() else (endpoint, None)


def _repo_lines(repo: Repo) -> list[str]:
    r = repo.name
    lines = [f"{r}-type={REPO_TYPES[repo.kind]}", f"{r}-cipher-type=aes-256-cbc"]
    # Retention is the platform's (backups.retention, one policy for the logical and the
    # physical runs): pgBackRest's own count-based expiry is set out of reach, and the prune
    # expires the sets the policy no longer keeps (`expire --set`). WAL is kept from the
    # oldest backup kept, so every moment after it stays reachable.
    lines += [f"{r}-retention-full-type=count", f"{r}-retention-full=9999999"]
    if repo.kind == "local":
        lines.append(f"{r}-path={settings.PITR_LOCAL_DIR}")
    elif repo.kind == "s3":
        lines += [
            f"{r}-path={settings.PITR_S3_PATH}",
            f"{r}-s3-bucket={settings.PITR_S3_BUCKET}",
            f"{r}-s3-region={settings.PITR_S3_REGION}",
            f"{r}-s3-uri-style={settings.PITR_S3_URI_STYLE}",
            f"{r}-bundle=y",
        ]
        host, port = _host_port(
            settings.PITR_S3_ENDPOINT or f"s3.{settings.PITR_S3_REGION}.amazonaws.com"
        )
        lines.append(f"{r}-s3-endpoint={host}")
        if port:
            lines.append(f"{r}-storage-port={port}")
        if not settings.PITR_S3_KEY:
            # No shared key: temporary credentials from the instance's role (EC2, ECS).
            lines.append(f"{r}-s3-key-type=auto")
        if not settings.PITR_S3_VERIFY_TLS:
            lines.append(f"{r}-storage-verify-tls=n")
    elif repo.kind == "gcs":
        lines += [
            f"{r}-path={settings.PITR_GCS_PATH}",
            f"{r}-gcs-bucket={settings.PITR_GCS_BUCKET}",
            f"{r}-gcs-key-type={settings.PITR_GCS_KEY_TYPE}",
            f"{r}-storage-upload-chunk-size={settings.PITR_GCS_CHUNK_SIZE}",
            f"{r}-bundle=y",
        ]
        if settings.PITR_GCS_ENDPOINT:
            lines.append(f"{r}-gcs-endpoint={settings.PITR_GCS_ENDPOINT}")
        if settings.PITR_GCS_KEY_TYPE == "service" and settings.PITR_GCS_KEY:
            lines.append(f"{r}-gcs-key={settings.PITR_GCS_KEY}")
        if not settings.PITR_GCS_VERIFY_TLS:
            lines.append(f"{r}-storage-verify-tls=n")
    return lines


def render_config() -> str:
    """pgbackrest.conf, without secrets."""
    d = settings.PITR_CONFIG_DIR
    glob = [
        "# Written by `manage.py pitr setup` from the PITR_* settings; edits are overwritten.",
        "[global]",
        "compress-type=zst",
        f"compress-level={settings.PITR_COMPRESS_LEVEL}",
        f"process-max={settings.PITR_PROCESS_MAX}",
        f"io-timeout={settings.PITR_IO_TIMEOUT}",
        # A backup starts at once (an immediate checkpoint), not at the next scheduled one.
        "start-fast=y",
        # A restore into a directory that holds an older copy only rewrites what changed.
        "delta=y",
        f"lock-path={d / 'lock'}",
        f"log-path={d / 'log'}",
        "log-level-file=info",
        "log-level-console=warn",
        "log-level-stderr=error",
    ]
    for repo in repos():
        glob += _repo_lines(repo)
    stanza = [
        f"[{settings.PITR_STANZA}]",
        f"pg1-path={settings.PITR_PG_DATA}",
        f"pg1-port={settings.PITR_PG_PORT}",
        f"pg1-user={settings.PITR_PG_USER}",
        # On the database host (pgBackRest's TLS server uses what the client sends).
        f"pg1-socket-path={settings.PITR_PG_SOCKET}",
    ]
    if settings.PITR_PG_HOST:
        # The repository-host layout: pgBackRest's TLS server on the database host.
        stanza += [
            f"pg1-host={settings.PITR_PG_HOST}",
            "pg1-host-type=tls",
            f"pg1-host-port={settings.PITR_PG_HOST_PORT}",
            f"pg1-host-ca-file={settings.PITR_TLS_CA_FILE}",
            f"pg1-host-cert-file={settings.PITR_TLS_CERT_FILE}",
            f"pg1-host-key-file={settings.PITR_TLS_KEY_FILE}",
        ]
    return "\n".join(glob + [""] + stanza) + "\n"


def cipher_pass() -> str:
    path = settings.PITR_CIPHER_PASS_FILE
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise PgBackRestError(
            f"The repository passphrase file {path} does not exist: create it with "
            "`manage.py pitr keys create` (or set PITR_CIPHER_PASS_FILE)."
        ) from None
    if len(value) < 20:
        raise PgBackRestError(f"The repository passphrase in {path} is shorter than 20 characters.")
    return value


def render_secrets() -> str:
    lines = ["[global]"]
    passphrase = cipher_pass()
    for repo in repos():
        lines.append(f"{repo.name}-cipher-pass={passphrase}")
        if repo.kind == "s3" and settings.PITR_S3_KEY:
            lines += [
                f"{repo.name}-s3-key={settings.PITR_S3_KEY}",
                f"{repo.name}-s3-key-secret={settings.PITR_S3_KEY_SECRET}",
            ]
        if repo.kind == "gcs" and settings.PITR_GCS_KEY_TYPE == "token":
            lines.append(f"{repo.name}-gcs-key={settings.PITR_GCS_KEY}")
    return "\n".join(lines) + "\n"


def _owner() -> tuple[int, int] | None:
    """uid/gid of PITR_OS_USER when this process must hand files to it."""
    user = settings.PITR_OS_USER
    if not user or os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    if owner := _owner():
        os.chown(temporary, *owner)
    os.replace(temporary, path)


def write_config() -> Path:
    """Write both files (atomically, each replaced whole) and the directories pgBackRest
    writes to; return the configuration's path."""
    d = settings.PITR_CONFIG_DIR
    owner = _owner()
    dirs = [d, d / "conf.d", d / "lock", d / "log"]
    if "local" in settings.PITR_REPOS:
        dirs.append(settings.PITR_LOCAL_DIR)
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        if owner:
            os.chown(directory, *owner)
    _write(secrets_path(), render_secrets(), 0o600)
    _write(config_path(), render_config(), 0o640)
    return config_path()


def base_command() -> list[str]:
    return [
        settings.PITR_BIN,
        f"--config={config_path()}",
        f"--config-include-path={secrets_path().parent}",
        f"--stanza={settings.PITR_STANZA}",
    ]


def archive_command() -> str:
    """PostgreSQL's archive_command for this configuration. With PITR_PG_HOST the database
    host has a pgBackRest configuration of its own (docker/postgres/), which it finds in
    its default place or its PGBACKREST_* environment."""
    if settings.PITR_PG_HOST:
        return shlex.join([settings.PITR_BIN, f"--stanza={settings.PITR_STANZA}"]) + (
            " archive-push %p"
        )
    return shlex.join(base_command()) + " archive-push %p"


def restore_command() -> str:
    return shlex.join(base_command()) + " archive-get %f %p"


def postgresql_settings() -> dict[str, str]:
    """What postgresql.conf needs for continuous archiving (`manage.py pitr setup` prints it,
    docker/ sets it)."""
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive_command(),
        "archive_timeout": str(settings.PITR_ARCHIVE_TIMEOUT),
    }


def as_os_user(cmd: list[str]) -> list[str]:
    owner = settings.PITR_OS_USER
    if owner and os.geteuid() == 0 and pwd.getpwuid(0).pw_name != owner:
        return ["runuser", "-u", owner, "--", *cmd]
    return cmd


def _error_text(stderr: str, stdout: str) -> str:
    """pgBackRest's error, after the warnings that explain it (its console, at "warn",
    says "unable to check pg1: <the cause>" before the error says "no database found")."""
    warnings = [line.strip() for line in stdout.splitlines() if "WARN:" in line]
    lines = [line for line in (stderr or stdout).splitlines() if line.strip()]
    return "\n".join(warnings[-4:] + lines[-8:]) or "pgBackRest failed without a message."


def run(
    *args: str,
    timeout: float | None = None,
    progress: Callable[[float], None] | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run one pgBackRest command as the data directory's owner; return its stdout. With
    `progress`, the console runs at detail level and each percentage it reports is passed
    on (a float 0-100)."""
    if not shutil.which(settings.PITR_BIN):
        raise PgBackRestError(
            f"{settings.PITR_BIN} is not installed (Debian: apt-get install pgbackrest)."
        )
    cmd = as_os_user([*base_command(), *args])
    full_env = {**os.environ, **(env or {})}
    if progress is None:
        try:
            done = subprocess.run(  # noqa: S603 - our argv, no shell
                cmd, capture_output=True, text=True, timeout=timeout, env=full_env
            )
        except subprocess.TimeoutExpired as exc:
            raise PgBackRestError(f"pgBackRest {args[0]} took longer than {timeout} s") from exc
        if done.returncode:
            raise PgBackRestError(_error_text(done.stderr, done.stdout), code=done.returncode)
        return done.stdout
    cmd = [*cmd, "--log-level-console=detail"]
    with subprocess.Popen(  # noqa: S603 - our argv, no shell
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    ) as proc:
        if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE given
            raise PgBackRestError("no pipes to pgBackRest")
        kept: list[str] = []
        for line in _lines(proc.stdout):
            kept = (kept + [line])[-50:]
            if match := PERCENT.search(line):
                progress(float(match.group(1)))
        stderr = proc.stderr.read()
        code = proc.wait(timeout=timeout)
    if code:
        raise PgBackRestError(_error_text(stderr, "\n".join(kept)), code=code)
    return "\n".join(kept)


def _lines(stream: Any) -> Iterator[str]:
    yield from (line.rstrip("\n") for line in stream)


def info() -> dict[str, Any]:
    """The stanza's entry of `pgbackrest info --output=json` (backups, WAL range, status)."""
    out = run("info", "--output=json", timeout=120)
    stanzas = json.loads(out or "[]")
    return stanzas[0] if stanzas else {}


def backup_sets() -> list[dict[str, Any]]:
    return list(info().get("backup", []))
