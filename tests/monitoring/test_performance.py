"""Per-minute request figures, the performance page and its server-side SVG charts."""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET

import pytest
from django.urls import reverse
from django.utils import timezone

from monitoring import charts, request_stats
from monitoring.models import (
    LATENCY_BUCKET_FIELDS,
    LATENCY_BUCKETS_MS,
    RequestMinute,
    SlowQuery,
    SystemSample,
)
from monitoring.request_stats import bucket_index, quantile
from monitoring.selectors import request_series_get, window_get
from tests.monitoring.conftest import BOTH_DATABASES
from tests.students.factories import PASSWORD

pytestmark = pytest.mark.unit
SVG = "{http://www.w3.org/2000/svg}"


# --- histogram arithmetic --------------------------------------------------------------------
def test_buckets_and_quantiles() -> None:
    assert len(LATENCY_BUCKET_FIELDS) == len(LATENCY_BUCKETS_MS) + 1
    assert bucket_index(0) == 0 and bucket_index(10) == 0 and bucket_index(10.1) == 1
    assert bucket_index(10_000) == len(LATENCY_BUCKETS_MS) - 1
    assert bucket_index(60_000) == len(LATENCY_BUCKETS_MS)  # the open-ended bucket
    buckets = [0] * len(LATENCY_BUCKET_FIELDS)
    assert quantile(buckets, 0.5) is None
    buckets[bucket_index(60)] = 10  # ten requests between 50 and 75 ms
    assert quantile(buckets, 0.5) == pytest.approx(62.5)  # interpolated inside the bucket
    assert quantile(buckets, 1.0) == pytest.approx(75.0)
    buckets[-1] = 90  # most requests slower than the last bound
    assert quantile(buckets, 0.95) == LATENCY_BUCKETS_MS[-1]


def test_buffer_sums_per_minute_and_route_and_is_due_by_count(settings) -> None:
    buffer = request_stats.RequestStatsBuffer()
    at = datetime.datetime(2030, 1, 1, 8, 30, 15, tzinfo=datetime.UTC).timestamp()
    buffer.add(route="a", status=200, duration_ms=20, queries=3, at=at)
    buffer.add(route="a", status=404, duration_ms=40, queries=1, at=at + 10)
    buffer.add(route="a", status=500, duration_ms=700, queries=0, at=at + 60)  # next minute
    settings.MONITORING_REQUEST_FLUSH_REQUESTS = 3
    cells = buffer.take_if_due()
    assert cells is not None and buffer.take_if_due() is None  # taken once
    first = cells[(int(at // 60), "a")]
    assert (first.requests, first.client_errors, first.server_errors, first.queries_sum) == (
        2,
        1,
        0,
        4,
    )
    assert first.duration_ms_sum == 60
    second = cells[(int(at // 60) + 1, "a")]
    assert second.server_errors == 1 and second.buckets[bucket_index(700)] == 1


@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_requests_become_minute_rows_added_up_across_flushes(client, world) -> None:
    assert client.login(username=world.registrar.username, password=PASSWORD)
    request_stats.BUFFER.clear()
    for _ in range(3):
        assert client.get(reverse("students:dashboard")).status_code == 200
    assert client.get(reverse("students:student_detail", args=[999_999])).status_code == 404
    assert request_stats.flush() >= 2
    row = RequestMinute.objects.get(route="students:dashboard")
    assert row.requests == 3 and row.queries_sum > 0 and row.duration_ms_sum > 0
    assert sum(getattr(row, f) for f in LATENCY_BUCKET_FIELDS) == 3
    assert RequestMinute.objects.get(route="students:student_detail").client_errors == 1
    # a second process (or flush) adds to the same row instead of writing another
    request_stats.BUFFER.add(
        route="students:dashboard", status=500, duration_ms=50, queries=1, at=row.minute.timestamp()
    )
    request_stats.flush()
    row.refresh_from_db()
    assert (row.requests, row.server_errors) == (4, 1)
    assert RequestMinute.objects.filter(route="students:dashboard").count() == 1


# --- charts ----------------------------------------------------------------------------------
def test_nice_axis_tops_and_labels() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 230, 999)] == [
        1.0,
        0.5,
        1.0,
        10.0,
        20.0,
        250.0,
        1000.0,
    ]
    assert charts.format_number(1500) == "1.5k" and charts.format_number(0.25) == "0.25"


def test_line_chart_is_valid_svg_with_escaped_labels_and_gaps() -> None:
    start = datetime.datetime(2030, 1, 1, 8, 0, tzinfo=datetime.UTC)
    minute = datetime.timedelta(minutes=1)
    svg = charts.line_chart(
        title="Latency <test>",
        series=[
            charts.Series(
                label="<script>alert(1)</script>",
                points=[(start, 10.0), (start + minute, 20.0), (start + 2 * minute, None)]
                + [(start + 3 * minute, 40.0), (start + 4 * minute, 30.0)],
            )
        ],
        start=start,
        end=start + 5 * minute,
        unit=" ms",
    )
    root = ET.fromstring(str(svg))  # noqa: S314 - our own output; proves it is well-formed XML
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}title").text == "Latency <test>"
    assert "<script>" not in str(svg)
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # the None broke the line in two
    first = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    # y grows downwards: 20 ms sits higher (smaller y) than 10 ms; the axis top is 50
    assert first[1][1] < first[0][1]
    assert "50 ms" in [t.text for t in root.iter(f"{SVG}text")]


def test_bar_chart_draws_one_bar_per_value() -> None:
    svg = charts.bar_chart(title="Sizes", bars=[("a", 1.0), ("b", 3.0)], unit=" MB")
    root = ET.fromstring(str(svg))  # noqa: S314 - our own output
    bars = root.findall(f"{SVG}rect[@class='bar']")
    assert [b.get("data-value") for b in bars] == ["1", "3"]
    assert float(bars[1].get("height")) == pytest.approx(3 * float(bars[0].get("height")))


# --- the page --------------------------------------------------------------------------------
def _minute_rows(now: datetime.datetime) -> None:
    minute = now.replace(second=0, microsecond=0)
    for back in range(5):
        for route, ms, count in (("students:dashboard", 60, 10), ("students:student_list", 300, 4)):
            buckets = {f: 0 for f in LATENCY_BUCKET_FIELDS}
            buckets[LATENCY_BUCKET_FIELDS[bucket_index(ms)]] = count
            RequestMinute.objects.create(
                minute=minute - datetime.timedelta(minutes=back),
                route=route,
                requests=count,
                server_errors=1 if route.endswith("list") else 0,
                duration_ms_sum=ms * count,
                queries_sum=5 * count,
                **buckets,
            )


@pytest.mark.django_db
def test_series_selector_sums_bins_and_reads_percentiles() -> None:
    now = timezone.now()
    _minute_rows(now)
    series = request_series_get(window=window_get(hours=1, now=now))
    assert [r.route for r in series.routes] == ["students:dashboard", "students:student_list"]
    dashboard = series.routes[0]
    assert dashboard.requests == 50 and dashboard.queries_per_request == 5
    assert 50 <= dashboard.p50 <= 75 and 50 <= dashboard.p95 <= 75
    assert series.total.requests == 70 and series.total.server_errors == 5
    assert sum(f.requests for f in series.per_bin.values()) == 70
    assert len(series.per_route_bin["students:student_list"]) == 5


@pytest.mark.django_db
def test_performance_page_draws_charts_for_district_admins(
    client, district_user, world, backups_contract
) -> None:
    now = timezone.now()
    _minute_rows(now)
    SlowQuery.objects.create(
        recorded_at=now, fingerprint="f" * 16, statement="SELECT pg_sleep(?)", duration_ms=250
    )
    for back in range(3):
        SystemSample.objects.create(
            taken_at=now - datetime.timedelta(minutes=back),
            cpu_percent=12.5,
            memory_percent=40,
            disk_path="/srv",
            disk_percent=63.0,
            disk_used_bytes=63 * 1024**3,
            disk_total_bytes=100 * 1024**3,
        )
    backups_contract()  # no backup history yet: empty state
    client.force_login(district_user)
    page = client.get(reverse("monitoring:performance") + "?hours=1")
    assert page.status_code == 200
    html = page.content.decode()
    for chart in ("latency", "traffic", "slow-queries", "disk"):
        section = html.split(f'data-chart="{chart}"')[1].split("</section>")[0]
        assert "<svg" in section and ("<polyline" in section or "<circle" in section), chart
    assert 'data-series="students:dashboard p95"' in html
    assert 'data-series="students:student_list p50"' in html
    assert html.count("No backups recorded yet.") == 2
    assert 'data-route="students:dashboard"' in html
    assert "SELECT pg_sleep(?)" in html
    assert "cdn" not in html.lower() and "<script" not in html.lower()

    backups_contract(
        backup_run_history=lambda since: [
            {
                "started_at": now - datetime.timedelta(days=1),
                "size_bytes": 50 * 1024**2,
                "duration_seconds": 42.0,
                "status": "succeeded",
            },
            {
                "started_at": now,
                "size_bytes": 60 * 1024**2,
                "duration_seconds": datetime.timedelta(seconds=45),
                "status": "succeeded",
            },
        ]
    )
    page = client.get(reverse("monitoring:performance") + "?hours=24")
    html = page.content.decode()
    size_section = html.split('data-chart="backup-size"')[1].split("</section>")[0]
    assert re.findall(r'data-value="([\d.]+)"', size_section) == ["50", "60"]
    duration = html.split('data-chart="backup-duration"')[1].split("</section>")[0]
    assert re.findall(r'data-value="([\d.]+)"', duration) == ["42", "45"]


@pytest.mark.django_db
def test_performance_page_empty_state_and_access(client, district_user, world) -> None:
    url = reverse("monitoring:performance")
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(world.admin)
    assert client.get(url).status_code == 403  # a school administrator
    client.force_login(district_user)
    page = client.get(url + "?hours=not-a-number")
    assert page.status_code == 200
    assert b"No requests recorded in this window yet" in page.content
    assert page.context["window"].hours == 6


@pytest.mark.django_db
def test_backup_runs_fall_back_to_the_backup_run_listing(backups_contract) -> None:
    from types import SimpleNamespace

    from monitoring.selectors import backup_runs_get

    now = timezone.now()
    run = SimpleNamespace(
        started_at=now - datetime.timedelta(hours=1),
        stored_size=4096,
        duration=datetime.timedelta(seconds=90),
        status="succeeded",
    )
    old = SimpleNamespace(started_at=now - datetime.timedelta(days=90), stored_size=1)
    backups_contract(backup_runs_list=lambda kind, limit: [run, old])
    points = backup_runs_get(since=now - datetime.timedelta(days=30))
    assert [(p.size_bytes, p.duration_seconds, p.status) for p in points] == [
        (4096, 90.0, "succeeded")
    ]

    def broken(**kwargs):
        raise RuntimeError("the backups app changed")

    backups_contract(backup_run_history=broken)
    assert backup_runs_get(since=now) == []  # logged; the page still renders
