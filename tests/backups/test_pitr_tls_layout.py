"""The deployment layout of docker/compose.pitr.yaml, on loopback: PostgreSQL's host runs
pgBackRest's TLS server (and archives through its own pgBackRest), and the worker, on
another host, drives the backups through that server with a client certificate
(PITR_PG_HOST). Both reach the same repository (S3 or GCS in production; a directory
here). A client without the authorised certificate is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.backups.pitr import PitrPlatform, as_postgres, available, pitr_platform
from tests.helpers import free_port

pytestmark = [
    pytest.mark.skipif(bool(available()) or not shutil.which("openssl"), reason="pgBackRest"),
    pytest.mark.xdist_group(name="pitr-tls"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]


TLS_PORT: dict[Path, int] = {}  # the database host's TLS server, by platform


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certificates(directory: Path) -> None:
    """A CA, the database host's server certificate (for localhost) and two client
    certificates: the worker's (authorised) and a stranger's (same CA, other name)."""
    directory.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)  # fmt: skip
    for name, extra in (
        # pgBackRest matches the host name against DNS names, not IP addresses.
        ("server", "subjectAltName=DNS:localhost"),
        ("worker", ""),
        ("stranger", ""),
    ):
        common_name = "localhost" if name == "server" else name
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={common_name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
        ext = ["-extfile", f"{name}.ext"] if extra else []
        if extra:
            (directory / f"{name}.ext").write_text(extra + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *ext,
                cwd=directory)  # fmt: skip
    for path in directory.iterdir():
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
        path.chmod(0o600)


@pytest.fixture(scope="module")
def db_host() -> PitrPlatform:
    with pitr_platform() as p:
        p.manage("pitr", "setup")
        tls = p.root / "tls"
        certificates(tls)
        port = free_port()
        conf = p.root / "server.conf"
        conf.write_text(
            (p.root / "conf" / "pgbackrest.conf")
            .read_text()
            .replace(
                "[global]",
                "[global]\n"
                f"tls-server-address=127.0.0.1\ntls-server-port={port}\n"
                f"tls-server-cert-file={tls / 'server.crt'}\n"
                f"tls-server-key-file={tls / 'server.key'}\n"
                f"tls-server-ca-file={tls / 'ca.crt'}\n"
                "tls-server-auth=worker=schoolhouse\n",
                1,
            )
        )
        if os.geteuid() == 0:
            shutil.chown(conf, "postgres", "postgres")
        server = subprocess.Popen(
            as_postgres(
                "pgbackrest", f"--config={conf}",
                f"--config-include-path={p.root / 'conf' / 'conf.d'}", "server",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        TLS_PORT[p.root] = port
        try:
            yield p
        finally:
            server.terminate()
            server.wait(timeout=30)


def worker_env(p: PitrPlatform, client: str = "worker") -> dict[str, str]:
    tls = p.root / "tls"
    return {
        "PITR_PG_HOST": "localhost",
        "PITR_PG_HOST_PORT": str(TLS_PORT[p.root]),
        "PITR_TLS_CA_FILE": str(tls / "ca.crt"),
        "PITR_TLS_CERT_FILE": str(tls / f"{client}.crt"),
        "PITR_TLS_KEY_FILE": str(tls / f"{client}.key"),
        # The worker's own configuration, apart from the database host's.
        "PITR_CONFIG_DIR": str(p.root / f"conf-{client}"),
    }


def test_the_worker_backs_up_through_the_database_hosts_tls_server(db_host: PitrPlatform) -> None:
    env = worker_env(db_host)
    conf = (db_host.root / "conf-worker").joinpath("pgbackrest.conf")
    db_host.manage("pitr", "config", **env)
    done = db_host.manage("backup_now", "--physical", "full", **env)
    assert "Physical backup #" in done.stdout, done.stdout + done.stderr
    text = conf.read_text()
    assert "pg1-host=localhost" in text and "pg1-host-type=tls" in text
    assert "archives its WAL" in db_host.manage("pitr", "setup", **env).stdout


def test_a_client_without_the_authorised_certificate_is_refused(db_host: PitrPlatform) -> None:
    done = db_host.manage(
        "backup_now", "--physical", "full", check=False, **worker_env(db_host, "stranger")
    )
    assert done.returncode == 1
    assert "failed" in done.stderr.lower()
