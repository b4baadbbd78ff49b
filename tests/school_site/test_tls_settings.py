"""Encrypted connections: PostgreSQL with sslmode/sslrootcert and Redis over TLS (rediss://)
for the cache, the Celery broker and the result backend. Settings are read by child
processes; then real throwaway servers speaking TLS only (a Redis with its plain port
closed, a PostgreSQL cluster with ssl=on) prove that the connections are made, verified
against our own CA, and refused with the wrong one."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import PYTHON, REPO, free_port, subprocess_env

PG_BIN = Path("/usr/lib/postgresql/15/bin")

PRINT_TLS = """
import json, django
django.setup()
from django.conf import settings as s
from school_site.celery import app
pool = s.CACHES["default"].get("OPTIONS", {}).get("CONNECTION_POOL_KWARGS", {})
print(json.dumps({
    "db": s.DATABASES["default"].get("OPTIONS", {}),
    "cache_tls": {k: v for k, v in pool.items() if k.startswith("ssl")},
    "broker_use_ssl": app.conf.broker_use_ssl,
    "backend_use_ssl": app.conf.redis_backend_use_ssl,
}, default=str))
"""


def child(script: str, tmp_path: Path, **env: str | None) -> subprocess.CompletedProcess:
    base: dict[str, str | None] = {
        "DATABASE_URL": None,
        "REDIS_URL": None,
        "CELERY_BROKER_URL": None,
        "CELERY_RESULT_BACKEND": None,
        "SCHOOLHOUSE_TESTING": "true",
        "SCHOOLHOUSE_VAR_DIR": str(tmp_path / "var"),
        "SCHOOLHOUSE_ENV_FILE": "/nonexistent",
    }
    base.update(env)
    return subprocess.run(
        [PYTHON, "-c", script],
        cwd=REPO,
        env=subprocess_env(**base),  # type: ignore[arg-type]
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_json(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Certificates: a CA of our own and a server certificate for 127.0.0.1 / localhost
# ---------------------------------------------------------------------------------------------
def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(folder: Path, *, ca_name: str = "Schoolhouse test CA") -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths["key"].chmod(0o600)
    return paths


# ---------------------------------------------------------------------------------------------
# Settings, read by child processes
# ---------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_rediss_urls_give_celery_and_the_cache_verified_tls(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder: only its existence is checked at start-up")
    s = last_json(
        child(
            PRINT_TLS,
            tmp_path,
            REDIS_URL="rediss://cache.internal:6380/1",
            CELERY_BROKER_URL="rediss://cache.internal:6380/2",
            CELERY_RESULT_BACKEND="rediss://cache.internal:6380/3",
            REDIS_SSL_CA_CERTS=str(ca),
        )
    )
    import ssl

    expected = {"ssl_cert_reqs": int(ssl.CERT_REQUIRED), "ssl_ca_certs": str(ca)}
    assert s["cache_tls"] == expected
    assert s["broker_use_ssl"] == expected
    assert s["backend_use_ssl"] == expected


@pytest.mark.unit
def test_plain_redis_has_no_tls_options(tmp_path) -> None:
    s = last_json(
        child(
            PRINT_TLS,
            tmp_path,
            REDIS_URL="redis://cache.internal:6379/1",
            DATABASE_URL="postgres://u:p@db.internal:5432/school",
            DB_SSLMODE="verify-full",
            DB_SSLROOTCERT="/etc/ssl/certs/ca-certificates.crt",
        )
    )
    assert s["cache_tls"] == {} and not s["broker_use_ssl"] and not s["backend_use_ssl"]
    assert s["db"]["sslmode"] == "verify-full"
    assert s["db"]["sslrootcert"] == "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.unit
@pytest.mark.parametrize(
    "env,message",
    [
        ({"REDIS_SSL_CERT_REQS": "sometimes"}, "REDIS_SSL_CERT_REQS must be"),
        ({"REDIS_SSL_CA_CERTS": "/nonexistent/ca.pem"}, "REDIS_SSL_CA_CERTS names no file"),
        (
            {"DATABASE_URL": "postgres://u:p@h:5432/d", "DB_SSLMODE": "always"},
            "DB_SSLMODE must be one of",
        ),
    ],
)
def test_invalid_tls_settings_are_refused_at_start(tmp_path, env, message) -> None:
    out = child(PRINT_TLS, tmp_path, CELERY_BROKER_URL="rediss://h:6380/0", **env)
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr and message in out.stderr


# ---------------------------------------------------------------------------------------------
# A Redis that speaks only TLS
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tls_redis(pki: dict[str, Path], log: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(pki["cert"]),
            "--tls-key-file",
            str(pki["key"]),
            "--tls-ca-cert-file",
            str(pki["ca"]),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while "Ready to accept connections" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TLS redis-server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


REDIS_ROUND_TRIP = """
import json, django
django.setup()
from django.core.cache import cache
from school_site.celery import app
out = {}
cache.set("tls-probe", "cached over TLS", 30)
out["cache"] = cache.get("tls-probe")
try:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        client = conn.default_channel.client
        out["broker_ping"] = client.ping()
        kinds = type(client.connection_pool.get_connection()).__mro__
        out["broker_tls"] = any(k.__name__ == "SSLConnection" for k in kinds)
    app.backend.set("tls-probe", "stored over TLS")
    out["backend"] = app.backend.get("tls-probe").decode()
except Exception as exc:
    out["error"] = type(exc).__name__ + ": " + str(exc)[:200]
print(json.dumps(out))
"""


@pytest.mark.integration
def test_cache_broker_and_results_travel_over_verified_tls(tmp_path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    pki = make_pki(tmp_path / "pki")
    stranger = make_pki(tmp_path / "other-pki", ca_name="Somebody else's CA")
    with tls_redis(pki, tmp_path / "redis.log") as port:
        urls = {
            "REDIS_URL": f"rediss://127.0.0.1:{port}/1",
            "CELERY_BROKER_URL": f"rediss://127.0.0.1:{port}/2",
            "CELERY_RESULT_BACKEND": f"rediss://127.0.0.1:{port}/3",
        }
        ok = last_json(child(REDIS_ROUND_TRIP, tmp_path, REDIS_SSL_CA_CERTS=str(pki["ca"]), **urls))
        assert ok == {
            "cache": "cached over TLS",
            "broker_ping": True,
            "broker_tls": True,
            "backend": "stored over TLS",
        }
        # A server whose certificate our CA did not sign is refused: the cache degrades to a
        # miss (never a 500), the broker fails loudly.
        refused = last_json(
            child(REDIS_ROUND_TRIP, tmp_path, REDIS_SSL_CA_CERTS=str(stranger["ca"]), **urls)
        )
        assert refused["cache"] is None
        assert "certificate verify failed" in refused["error"].lower() or "SSL" in refused["error"]


# ---------------------------------------------------------------------------------------------
# A PostgreSQL cluster with ssl=on
# ---------------------------------------------------------------------------------------------
def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@contextlib.contextmanager
def tls_postgres(pki: dict[str, Path]) -> Iterator[int]:
    # Not under tmp_path: the server runs as `postgres`, which must own its directory.
    root = Path(tempfile.mkdtemp(prefix="schoolhouse-tls-pg-"))
    port = free_port()
    data = root / "data"
    for name in ("cert", "key"):
        shutil.copy(pki[name], root / pki[name].name)
    if os.geteuid() == 0:
        for path in [root, *root.iterdir()]:
            shutil.chown(path, "postgres", "postgres")
    ctl = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w")
    try:
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "--locale=C.UTF-8",
            ),
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
        # Only TLS connections from 127.0.0.1 are accepted (hostssl), plain ones are rejected.
        (data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c ssl=on "
            f"-c ssl_cert_file={root / 'server.pem'} -c ssl_key_file={root / 'server.key'}"
        )
        subprocess.run(
            [*ctl, "-o", options, "start"], check=True, timeout=60, stdout=subprocess.DEVNULL
        )
        yield port
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run([*ctl, "-m", "immediate", "stop"], timeout=60, stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


PG_PROBE = """
import json, django
django.setup()
from django.db import connection
out = {}
try:
    with connection.cursor() as c:
        c.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        ssl_on, version = c.fetchone()
    out = {"ssl": ssl_on, "version": version}
except Exception as exc:
    out = {"error": type(exc).__name__ + ": " + str(exc)[:300]}
print(json.dumps(out))
"""


@pytest.mark.integration
def test_postgres_connection_is_encrypted_and_verified(tmp_path) -> None:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries are not in {PG_BIN}")
    pki = make_pki(tmp_path / "pki")
    stranger = make_pki(tmp_path / "other-pki", ca_name="Somebody else's CA")
    with tls_postgres(pki) as port:
        env = {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/postgres",
            "DB_POOL": "false",
        }
        ok = last_json(
            child(
                PG_PROBE, tmp_path, DB_SSLMODE="verify-full", DB_SSLROOTCERT=str(pki["ca"]), **env
            )
        )
        assert ok["ssl"] is True and ok["version"].startswith("TLSv1.")
        wrong_ca = last_json(
            child(
                PG_PROBE,
                tmp_path,
                DB_SSLMODE="verify-full",
                DB_SSLROOTCERT=str(stranger["ca"]),
                **env,
            )
        )
        assert "certificate verify failed" in wrong_ca["error"]
        plain = last_json(child(PG_PROBE, tmp_path, DB_SSLMODE="disable", **env))
        assert "no encryption" in plain["error"] or "rejects connection" in plain["error"]
