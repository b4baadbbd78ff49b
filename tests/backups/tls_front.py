"""A TLS front for the object-store emulators, so that the real pgBackRest (which speaks only
TLS to S3 and GCS) can reach them: Debian's nginx, a throwaway process on a free loopback port
with a self-signed certificate, proxying to an emulator's plain HTTP port.

Why nginx and not the emulator's own TLS: moto's server drops a connection it has kept for a
minute ("unexpected eof" in pgBackRest), and pgBackRest keeps its connections open between
files. nginx keeps the client's connection alive, reuses its own to the emulator, and passes
request and response bodies through unbuffered and unlimited in size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.emulators import REGION, S3_KEY, S3_SECRET
from tests.helpers import free_port
from tests.school_site.test_tls_settings import make_pki

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONF = """daemon off;
master_process on;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    upstream store {{
        server {upstream};
        keepalive 16;
        keepalive_timeout 600s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        keepalive_timeout 600s;
        keepalive_requests 1000000;
        client_max_body_size 0;
        location / {{
            proxy_pass http://store;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # S3 signs the Host header: the emulator must see the one the client sent.
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}
}}
"""


def nginx_available() -> str:
    """Why a TLS front cannot run here, or "" when it can."""
    return (
        "" if os.access(NGINX, os.X_OK) else "nginx is not installed (apt-get install nginx-light)"
    )


@dataclass
class TlsFront:
    """nginx terminating TLS on 127.0.0.1:port before `upstream` (an http:// URL)."""

    upstream: str
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """host:port, as pgBackRest's repo-s3-endpoint / repo-gcs-endpoint take it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start nginx (again, on the same port after `stop`) and wait until it answers TLS."""
        if self.process is not None and self.process.poll() is None:
            return
        pki = self.root / "pki"
        if not (pki / "server.pem").exists():
            make_pki(pki, ca_name="Schoolhouse emulator front")
        conf = self.root / "nginx.conf"
        conf.write_text(
            CONF.format(
                root=self.root,
                upstream=urlsplit(self.upstream).netloc,
                port=self.port,
                cert=pki / "server.pem",
                key=pki / "server.key",
            )
        )
        log = open(self.root / "nginx.out", "ab")  # noqa: SIM115 - the child keeps it
        with log:
            self.process = subprocess.Popen(  # noqa: S603 - our argv
                [NGINX, "-c", str(conf), "-p", str(self.root), "-e", str(self.root / "error.log")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop nginx at once (fast shutdown): open connections are cut, the port closes."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _answers(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
                context.wrap_socket(sock),
            ):
                return True
        except OSError:
            return False

    def log_tail(self) -> str:
        lines: list[str] = []
        for name in ("nginx.out", "error.log"):
            with contextlib.suppress(OSError):
                lines += (self.root / name).read_text(errors="replace").splitlines()[-10:]
        return "\n".join(lines)


@contextlib.contextmanager
def tls_front(upstream: str) -> Iterator[TlsFront]:
    """A running TLS front before `upstream` (http://host:port), removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="schoolhouse-tls-front-"))
    # nginx's worker drops root's rights: it must reach the temporary-file folders.
    root.chmod(0o755)
    front = TlsFront(upstream=upstream, root=root)
    try:
        front.start()
        yield front
    finally:
        front.stop()
        shutil.rmtree(root, ignore_errors=True)


def pitr_s3_env(front: TlsFront, bucket: str) -> dict[str, str]:
    """The PITR_S3_* settings of a repository in `bucket` on moto, through `front`."""
    return dict(
        PITR_S3_BUCKET=bucket,
        PITR_S3_ENDPOINT=front.endpoint,
        PITR_S3_REGION=REGION,
        PITR_S3_KEY=S3_KEY,
        PITR_S3_KEY_SECRET=S3_SECRET,
        PITR_S3_URI_STYLE="path",
        # The front's certificate is self-signed.
        PITR_S3_VERIFY_TLS="false",
    )


def pitr_gcs_env(front: TlsFront, bucket: str) -> dict[str, str]:
    """The PITR_GCS_* settings of a repository in `bucket` on the GCS emulator, through
    `front`."""
    return dict(
        PITR_GCS_BUCKET=bucket,
        PITR_GCS_ENDPOINT=front.endpoint,
        PITR_GCS_KEY_TYPE="token",
        PITR_GCS_KEY="emulator-token",
        PITR_GCS_VERIFY_TLS="false",
        # The emulator's resumable uploads answer no upload id: every file in one request.
        PITR_GCS_CHUNK_SIZE=str(1024**3),
    )
