"""Staff at work: the locust scenario of the load benchmark and the soak run.

Each simulated user is one real staff account (a teacher of one class, or a registrar) with
a session made by `bench.load.prepare`; BENCH_PLAN names the JSON file holding them. Between
two actions a user thinks for 2-10 s (BENCH_THINK_MIN/MAX; 0 and 0 for the saturation run).
Writes are real form posts with the CSRF token read from the page, as a browser sends them.

    locust -f bench/load/locustfile.py --headless -u 500 -r 25 -t 5m --host http://127.0.0.1:8000
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading
import time
import uuid
from http.cookiejar import Cookie
from typing import Any
from urllib.parse import urlencode

import gevent
from locust import FastHttpUser, between, constant, events, task
from locust.env import Environment

PLAN: list[dict[str, Any]] = json.loads(open(os.environ["BENCH_PLAN"]).read())  # noqa: SIM115
_next = itertools.count()
_lock = threading.Lock()
THINK_MIN = float(os.environ.get("BENCH_THINK_MIN", "2"))
THINK_MAX = float(os.environ.get("BENCH_THINK_MAX", "10"))
# Seconds after the last user has started before the statistics start (BENCH_WARMUP): the
# first visits of 500 users fill every cache at once, which a school's day does not do.
WARMUP = float(os.environ.get("BENCH_WARMUP", "0"))
SEARCH_TERMS = ["smith", "garcia", "maya", "nguyen", "ali", "kim", "sofia", "lee", "patel", "o"]
CSRF_RE = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
ERRORS_RE = re.compile(rb'class="error" role="alert">(.*?)</', re.S)
SERVE_RE = re.compile(rb'href="(/documents/serve/\?t=[^"]+)"')
FORM = "application/x-www-form-urlencoded"
ATTENDANCE = ["present"] * 23 + ["absent", "late"]
# A one-page PDF (as a scanner would send a signed form): small, so the upload measures the
# application's path (validation, hashing, storage, audit), not the loopback bandwidth.
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _cookie(name: str, value: str, host: str) -> Cookie:
    return Cookie(
        0,
        name,
        value,
        None,
        False,
        host,
        False,
        False,
        "/",
        True,
        False,
        None,
        False,
        None,
        None,
        {},
    )


def _multipart(fields: dict[str, str], file_field: str, filename: str, content: bytes):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{filename}"\r\nContent-Type: application/pdf\r\n\r\n'.encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# Every response's time, kept for the report's second window (from the end of the ramp-up,
# warm-up included): BENCH_SAMPLES names the file, written when locust quits.
SAMPLES = os.environ.get("BENCH_SAMPLES", "")
_samples: list[str] = []


@events.init.add_listener
def _warm_up_then_measure(environment: Environment, **_kwargs: Any) -> None:
    def spawned(**_kw: Any) -> None:
        _samples.append(f"spawned,{time.time():.3f},")
        if WARMUP > 0:
            gevent.spawn_later(WARMUP, environment.stats.reset_all)

    environment.events.spawning_complete.add_listener(spawned)


@events.request.add_listener
def _sample(response_time: float, exception: BaseException | None, **_kwargs: Any) -> None:
    if SAMPLES:
        _samples.append(
            f"{'ok' if exception is None else 'error'},{time.time():.3f},{response_time:.1f}"
        )


@events.quitting.add_listener
def _samples_write(**_kwargs: Any) -> None:
    if SAMPLES:
        with open(SAMPLES, "w") as fh:
            fh.write("\n".join(_samples) + "\n")


class StaffMember(FastHttpUser):
    wait_time = (
        between(THINK_MIN, THINK_MAX) if THINK_MAX > 0 else constant(0)  # type: ignore[assignment]
    )
    # Keep-alive like a browser; the pool is per user, as each browser has its own.
    concurrency = 2

    def on_start(self) -> None:
        with _lock:
            self.me = PLAN[next(_next) % len(PLAN)]
        host = (self.host or "").split("://", 1)[-1].split(":")[0]
        jar = self.client.cookiejar
        jar.set_cookie(_cookie("sessionid", self.me["sessionid"], host))
        jar.set_cookie(_cookie("csrftoken", self.me["csrftoken"], host))
        self.is_registrar = self.me["role"] == "registrar"

    # --- reads ------------------------------------------------------------------------------
    @task(6)
    def dashboard(self) -> None:
        self.client.get("/dashboard/", name="dashboard")

    @task(4)
    def search(self) -> None:
        term = random.choice(SEARCH_TERMS)
        self.client.get(f"/students/?q={term}", name="student search")

    @task(4)
    def profile(self) -> None:
        if self.me["students"]:
            pk = random.choice(self.me["students"])
            self.client.get(f"/students/{pk}/", name="student profile")

    @task(1)
    def report_card(self) -> None:
        if self.me["students"] and self.me["terms"]:
            pk = random.choice(self.me["students"])
            term = random.choice(self.me["terms"])
            self.client.get(f"/students/{pk}/report-card/{term}/", name="report card (pdf)")

    @task(1)
    def roster(self) -> None:
        if self.me["section_id"]:
            self.client.get(f"/classes/{self.me['section_id']}/roster.pdf", name="roster (pdf)")

    # --- writes -----------------------------------------------------------------------------
    def _submit(self, url: str, data: dict[str, str], what: str) -> None:
        """POST a sheet as the browser would; anything but the redirect is a failure."""
        with self.client.post(
            url,
            data=urlencode(data),
            headers={"Content-Type": FORM, "Referer": f"{self.host}{url}"},
            name=f"{what} (submit)",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"{what} not saved: HTTP {response.status_code}")

    def _csrf(self, page: bytes) -> str | None:
        match = CSRF_RE.search(page)
        return match.group(1).decode() if match else None

    # Writes are rarer than reads: a teacher takes attendance once or twice a day and enters
    # a class's marks now and then, but reads the dashboard and records all day.
    @task(2)
    def take_attendance(self) -> None:
        if not self.me["section_id"]:
            return
        url = f"/classes/{self.me['section_id']}/attendance/"
        with self.client.get(url, name="attendance (form)", catch_response=True) as page:
            token = self._csrf(page.content or b"")
            if not token:
                page.failure("no CSRF token on the attendance page")
                return
        data = {"csrfmiddlewaretoken": token}
        for pk in self.me["students"]:
            data[f"status_{pk}"] = random.choice(ATTENDANCE)
        self._submit(url, data, "attendance")

    @task(1)
    def enter_grades(self) -> None:
        if not self.me["assessments"]:
            return
        url = f"/assessments/{random.choice(self.me['assessments'])}/grades/"
        with self.client.get(url, name="grades (form)", catch_response=True) as page:
            token = self._csrf(page.content or b"")
            if not token:
                page.failure("no CSRF token on the grades page")
                return
            body = page.content or b""
        # The sheet's max score is in the page; 20 covers quizzes and tests alike.
        data = {"csrfmiddlewaretoken": token}
        for pk in self.me["students"]:
            if f'name="score_{pk}"'.encode() in body:
                data[f"score_{pk}"] = str(random.randint(8, 20))
        self._submit(url, data, "grades")

    @task(1)
    def upload_document(self) -> None:
        if not self.is_registrar or not self.me["students"]:
            return
        url = f"/students/{random.choice(self.me['students'])}/documents/new/"
        with self.client.get(url, name="upload (form)", catch_response=True) as page:
            token = self._csrf(page.content or b"")
            if not token:
                page.failure("no CSRF token on the upload page")
                return
        body, content_type = _multipart(
            {
                "csrfmiddlewaretoken": token,
                "title": "",
                "category": "correspondence",
                "comment": "",
            },
            "file",
            f"letter-{uuid.uuid4().hex[:8]}.pdf",
            PDF + uuid.uuid4().hex.encode(),  # distinct content: no deduplication shortcut
        )
        with self.client.post(
            url,
            data=body,
            headers={"Content-Type": content_type, "Referer": f"{self.host}{url}"},
            name="upload (submit)",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                errors = ERRORS_RE.search(response.content or b"")
                reason = re.sub(rb"<[^>]+>", b" ", errors.group(1)).decode()[:160] if errors else ""
                response.failure(f"upload not stored: HTTP {response.status_code} {reason}")

    @task(2)
    def download_document(self) -> None:
        url = f"/documents/versions/{self.me['download_version']}/download/"
        with self.client.get(url, name="download (link)", catch_response=True) as page:
            match = SERVE_RE.search(page.content or b"")
            if not match:
                page.failure("no download link on the page")
                return
        link = match.group(1).decode().replace("&amp;", "&")
        with self.client.get(link, name="download (file)", catch_response=True) as response:
            if not (response.content or b"").startswith(b"%PDF"):
                response.failure("the download is not the PDF")
