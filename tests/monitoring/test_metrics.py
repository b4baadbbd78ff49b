"""The Prometheus endpoint: who may read it, what it counts, and gunicorn's multiprocess mode."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request

import pytest
from django.urls import reverse

from tests.helpers import REPO, free_port, subprocess_env
from tests.monitoring.conftest import PUBLIC_ADDRESS
from tests.students.factories import PASSWORD


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a text exposition, None when it is absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def scrape(client, **extra) -> str:
    response = client.get(reverse("monitoring:metrics"), **extra)
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


@pytest.mark.unit
def test_unknown_clients_are_denied_and_the_token_lets_them_in(client, settings) -> None:
    url = reverse("monitoring:metrics")
    assert client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS).status_code == 403
    assert client.get(url).status_code == 200  # loopback is on the default allowlist
    # through a proxy on the same host the peer is loopback too: not trusted by address
    assert client.get(url, HTTP_X_FORWARDED_FOR=PUBLIC_ADDRESS).status_code == 403
    settings.MONITORING_METRICS_TOKEN = "scrape-token-9f3b"
    assert (
        client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS, HTTP_AUTHORIZATION="Bearer wrong").status_code
        == 403
    )
    ok = client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS, HTTP_AUTHORIZATION="Bearer scrape-token-9f3b")
    assert ok.status_code == 200
    settings.MONITORING_METRICS_ALLOWED_IPS = ["203.0.113.0/24"]
    assert client.get(url, REMOTE_ADDR=PUBLIC_ADDRESS).status_code == 200
    assert client.get(url).status_code == 403


@pytest.mark.unit
@pytest.mark.django_db
def test_a_page_view_is_timed_counted_and_its_queries_measured(client, world) -> None:
    labels = {"route": "students:dashboard", "method": "GET"}
    before = scrape(client)
    assert client.login(username=world.registrar.username, password=PASSWORD)
    assert client.get(reverse("students:dashboard")).status_code == 200
    assert client.get(reverse("students:dashboard")).status_code == 200
    after = scrape(client)

    def delta(name: str, **extra: str) -> float:
        return (sample(after, name, **labels, **extra) or 0) - (
            sample(before, name, **labels, **extra) or 0
        )

    assert delta("schoolhouse_http_request_duration_seconds_count") == 2
    assert delta("schoolhouse_http_request_duration_seconds_sum") > 0
    assert delta("schoolhouse_http_responses_total", status="200") == 2
    queries = {"route": "students:dashboard"}
    assert (sample(after, "schoolhouse_http_request_db_queries_count", **queries) or 0) - (
        sample(before, "schoolhouse_http_request_db_queries_count", **queries) or 0
    ) == 2
    assert (sample(after, "schoolhouse_http_request_db_queries_sum", **queries) or 0) > (
        sample(before, "schoolhouse_http_request_db_queries_sum", **queries) or 0
    )
    # an unknown URL is one bounded label, not one per path
    client.get("/no/such/page/123/")
    assert sample(scrape(client), "schoolhouse_http_responses_total", route="unmatched") >= 1


@pytest.mark.unit
@pytest.mark.django_db
def test_cache_hit_ratio_comes_from_redis_info(client) -> None:
    from django.core.cache import cache

    cache.set("ratio-probe", 1)
    cache.get("ratio-probe")
    cache.get("ratio-probe-missing")
    text = scrape(client)
    assert sample(text, "schoolhouse_redis_up") == 1
    ratio = sample(text, "schoolhouse_cache_hit_ratio")
    assert ratio is not None and 0 <= ratio <= 1
    assert sample(text, "schoolhouse_redis_keyspace_hits_total") >= 1
    assert sample(text, "schoolhouse_redis_keyspace_misses_total") >= 1


@pytest.mark.unit
@pytest.mark.django_db
def test_metrics_still_answer_with_redis_down(client, dead_cache) -> None:
    text = scrape(client)
    assert sample(text, "schoolhouse_redis_up") == 0
    assert sample(text, "schoolhouse_cache_hit_ratio") is None


def _serve_and_scrape(tmp_path, metrics_dir, requests: int) -> str:
    """Start gunicorn with the production config (docker/gunicorn.conf.py, 2 workers), send
    `requests` liveness probes, scrape /metrics, stop it."""
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "a")  # noqa: SIM115
    server = subprocess.Popen(
        ["gunicorn", "-c", "docker/gunicorn.conf.py", "school_site.wsgi"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env(
            GUNICORN_BIND=f"127.0.0.1:{port}",
            GUNICORN_WORKERS="2",
            # These two routes never open a database connection; the URL only has to parse.
            DATABASE_URL="postgres://nobody@127.0.0.1:1/none",
            DB_POOL="false",
            SCHOOLHOUSE_TESTING="true",
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            MONITORING_REQUEST_FLUSH_SECONDS="100000",
        ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait on another route: a timed-out try may still be served and counted
            try:
                urllib.request.urlopen(f"{base}/metrics", timeout=10).read()  # noqa: S310 - loopback
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log.flush()
                    pytest.fail((tmp_path / "gunicorn.log").read_text()[-3000:])
                time.sleep(0.2)
        for _ in range(requests):
            urllib.request.urlopen(f"{base}/health/live/", timeout=30).read()  # noqa: S310 - loopback
        return urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()  # noqa: S310 - loopback
    finally:
        server.send_signal(signal.SIGINT)  # gunicorn's quick shutdown (TERM waits for workers)
        server.wait(timeout=30)
        log.close()


@pytest.mark.integration
def test_gunicorn_workers_are_added_up_in_multiprocess_mode(tmp_path) -> None:
    metrics_dir = tmp_path / "prometheus"  # gunicorn's master creates it
    text = _serve_and_scrape(tmp_path, metrics_dir, requests=30)
    # read from the shared files (MultiProcessCollector), not one process's own registry
    assert "process_cpu_seconds_total" not in text
    count = sample(
        text,
        "schoolhouse_http_request_duration_seconds_count",
        route="monitoring:liveness",
        method="GET",
    )
    assert count == 30  # every worker's requests, whichever worker answered /metrics
    assert any(metrics_dir.glob("histogram_*.db"))

    # A restart starts from zero: the master empties the folder before the workers start, so
    # the previous run's files are not added in.
    text = _serve_and_scrape(tmp_path, metrics_dir, requests=5)
    count = sample(
        text,
        "schoolhouse_http_request_duration_seconds_count",
        route="monitoring:liveness",
        method="GET",
    )
    assert count == 5
