"""Peak memory of a gunicorn worker while a large document is uploaded through the real view.

    .venv/bin/python bench/upload_memory.py                # 1 GiB (the figure in BENCHMARKS.md)
    .venv/bin/python bench/upload_memory.py --size-mb 100  # quicker

What it does, all on this machine and loopback only:
1. a throw-away embedded deployment in a temporary folder (SQLite, file cache, local document
   store), migrated, with one school, one student and one registrar;
2. gunicorn with the project's docker/gunicorn.conf.py, one gthread worker, on a free port;
3. logs in, warms the worker with a 1 MB upload, records the worker's RSS ("before");
4. streams a multipart POST of SIZE bytes (a PDF header then filler, generated on the fly so
   the client holds none of it) to the student's upload page, sampling the worker's RSS
   every 20 ms, and reads the kernel's high-water mark (VmHWM) afterwards;
5. prints RSS before, peak and after, and checks the document really was stored.

The client is a separate process from the server, so its memory never counts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Title (benchmark) >>\nendobj\n"


def content_chunks(size: int) -> Iterator[bytes]:
    """The file's bytes: a PDF header, then ~1 MiB blocks of PDF comment filler."""
    first = PDF_HEAD[:size]
    yield first
    remaining = size - len(first)
    block = b"%" + b"0123456789abcdef" * 65536
    while remaining > 0:
        piece = block[: min(len(block), remaining)]
        remaining -= len(piece)
        yield piece


class StreamingMultipart:
    """A multipart/form-data body made while it is read: fields, then one file part of
    `size` bytes (PDF header + filler), so neither side needs the whole file in memory."""

    def __init__(self, *, fields: dict[str, str], filename: str, size: int) -> None:
        self.boundary = f"----schoolhouse-bench-{uuid.uuid4().hex}"
        head = b""
        for name, value in fields.items():
            head += (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n"
            ).encode()
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        self._parts: Iterator[bytes] = self._generate(head, size)
        self.length = len(head) + size + len(f"\r\n--{self.boundary}--\r\n")
        self._pending = b""

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _generate(self, head: bytes, size: int) -> Iterator[bytes]:
        yield head
        yield from content_chunks(size)
        yield f"\r\n--{self.boundary}--\r\n".encode()

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self._pending:
            try:
                self._pending += next(self._parts)
            except StopIteration:
                break
        end = self._pending.find(b"\n") + 1 or len(self._pending)
        if 0 <= size < end:
            end = size
        line, self._pending = self._pending[:end], self._pending[end:]
        return line

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._pending) < n:
            try:
                self._pending += next(self._parts)
            except StopIteration:
                break
        if n < 0:
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def __len__(self) -> int:
        return self.length


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def worker_pid(master: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


class Browser:
    """Just enough of a browser for Django: cookies and CSRF."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: object = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900)
        all_headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        all_headers.update(headers or {})
        conn.request(method, path, body=body, headers=all_headers)  # type: ignore[arg-type]
        response = conn.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        conn.close()
        return response.status, dict(response.getheaders()), data

    def csrf(self, path: str) -> str:
        status, _headers, page = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if not match:
            raise RuntimeError(f"no CSRF token on {path}")
        return match.group(1).decode()

    def upload(self, path: str, size: int, filename: str) -> int:
        token = self.csrf(path)
        body = StreamingMultipart(
            fields={"csrfmiddlewaretoken": token, "category": "academic", "title": filename},
            filename=filename,
            size=size,
        )
        status, _headers, _page = self.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": body.content_type,
                "Content-Length": str(len(body)),
                "Referer": f"http://127.0.0.1:{self.port}{path}",
            },
        )
        return status


SETUP = """
import django, json
django.setup()
from django.contrib.auth import get_user_model
from students.models import School, StaffMember, Student
school = School.objects.create(name="Bench School", code="bench")
student = Student.objects.create(school=school, student_number="B-1", first_name="Ada",
                                 last_name="Bench", date_of_birth="2014-01-01")
user = get_user_model().objects.create_user("registrar", password="bench-password-123")
StaffMember.objects.create(school=school, user=user, role="registrar")
print(json.dumps({"student": student.pk}))
"""

CHECK = """
import django, json
django.setup()
from files.models import DocumentVersion
v = DocumentVersion.objects.order_by("-pk").first()
print(json.dumps({"size": v.size, "sha256": v.sha256, "name": v.original_name}))
"""


def run(size_mb: int) -> dict[str, object]:
    size = size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="schoolhouse-bench-") as tmp:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "PYTEST_", "DATABASE_", "REDIS_", "CELERY_"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "school_site.settings",
                "SCHOOLHOUSE_ENV_FILE": "/nonexistent",
                "SCHOOLHOUSE_VAR_DIR": tmp,
                "DEBUG": "false",
                "SCHOOLHOUSE_TESTING": "false",
                "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
                "SECURE_SSL_REDIRECT": "false",
                "SESSION_COOKIE_SECURE": "false",
                "CSRF_COOKIE_SECURE": "false",
                "STATIC_MANIFEST": "false",
                "LOG_LEVEL": "WARNING",
                "DOCUMENTS_STORAGE": "local",
                "CELERY_TASK_ALWAYS_EAGER": "true",
                "PATH": f"{Path(PYTHON).parent}:{os.environ.get('PATH', '')}",
            }
        )
        manage = [PYTHON, "manage.py"]
        subprocess.run([*manage, "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
        ids = json.loads(
            subprocess.run(
                [PYTHON, "-c", SETUP], cwd=REPO, env=env, check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        port = free_port()
        log = open(Path(tmp) / "gunicorn.log", "wb")  # noqa: SIM115 - closed in finally
        gunicorn = subprocess.Popen(
            [
                str(Path(PYTHON).parent / "gunicorn"),
                "-c",
                "docker/gunicorn.conf.py",
                "school_site.wsgi",
            ],
            cwd=REPO,
            env={
                **env,
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "GUNICORN_WORKERS": "1",
                "GUNICORN_THREADS": "2",
            },
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            worker = worker_pid(gunicorn.pid)
            browser = Browser(port)
            token = browser.csrf("/accounts/login/")
            status, _h, _b = browser.request(
                "POST",
                "/accounts/login/",
                body=urlencode(
                    {
                        "csrfmiddlewaretoken": token,
                        "username": "registrar",
                        "password": "bench-password-123",
                    }
                ),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Referer": f"http://127.0.0.1:{port}/accounts/login/",
                },
            )
            if status != 302:
                raise RuntimeError(f"login answered {status}")
            upload_path = f"/students/{ids['student']}/documents/new/"
            # Warm-up: imports (libmagic, Tink), templates and connections, so "before" is
            # the steady state of a worker that has served uploads already.
            if browser.upload(upload_path, 1024 * 1024, "warm-up.pdf") != 302:
                raise RuntimeError("warm-up upload failed")
            before = rss_kib(worker)
            samples: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    samples.append(rss_kib(worker))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            status = browser.upload(upload_path, size, "large.pdf")
            elapsed = time.monotonic() - started
            stop.set()
            sampler.join()
            after = rss_kib(worker)
            high_water = rss_kib(worker, "VmHWM")
            if status != 302:
                raise RuntimeError(f"the large upload answered {status}")
            stored = json.loads(
                subprocess.run(
                    [PYTHON, "-c", CHECK],
                    cwd=REPO,
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            if stored["size"] != size:
                raise RuntimeError(f"stored {stored['size']} bytes, sent {size}")
        except BaseException:
            log.flush()
            sys.stderr.write((Path(tmp) / "gunicorn.log").read_text()[-4000:])
            raise
        finally:
            os.killpg(gunicorn.pid, signal.SIGTERM)
            gunicorn.wait(timeout=30)
            log.close()
    return {
        "upload_mib": size_mb,
        "seconds": round(elapsed, 1),
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_sampled_mib": round(max(samples + [after]) / 1024, 1),
        "rss_high_water_mib": round(high_water / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "growth_mib": round((max(samples + [after]) - before) / 1024, 1),
        "stored_sha256": stored["sha256"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="upload size in MiB")
    args = parser.parse_args()
    result = run(args.size_mb)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
