"""Health, metrics and performance pages. Thin: access rules here, the work in checks,
selectors and charts.

- /health/live/   liveness: the process answers; touches nothing.
- /health/ready/  readiness: the critical checks only, JSON, 200 or 503. Open to anyone, as a
                  load balancer cannot log in; it gives each check's state, never its details.
- /health/        the full dashboard: HTML for administrators; JSON (Accept or ?format=json),
                  text and the library's other formats for probes on the allowlist or with
                  the token. 503 only when a critical check fails, so "degraded" never reads
                  as "down".
- /metrics        Prometheus text, for the allowlist or the token.
- /monitoring/performance/  charts for administrators.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from health_check.base import HealthCheck
from health_check.views import HealthCheckView
from prometheus_client import CONTENT_TYPE_LATEST

from accounts.decorators import two_factor_gate

from . import charts, selectors
from .access import is_monitoring_admin, probe_allowed
from .checks import Entry, HealthReport, configured_checks, report_from
from .metrics import exposition


@never_cache
def liveness(request: HttpRequest) -> JsonResponse:
    """The process is up and serving; touches no dependency, so a load balancer never
    restarts web nodes because the database blinked."""
    return JsonResponse({"status": "ok"})


class HealthDashboardView(HealthCheckView):
    """django-health-check's view over our configured checks, with our access rules, status
    codes (503 for a critical failure, else 200) and a richer JSON."""

    template_name = "monitoring/health.html"
    critical_only = False
    entries: list[Entry]

    def get_checks(self) -> Any:
        self.entries = configured_checks(critical_only=self.critical_only)
        for entry in self.entries:
            yield entry.check

    @property
    def report(self) -> HealthReport:
        return report_from(self.entries, self.results)

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        refused = await _refuse_unless_admin_or_probe(request)
        if refused is not None:
            return refused
        response: HttpResponseBase = await super().get(request, *args, **kwargs)
        if response.status_code == 500:  # the library's "some check failed"
            response.status_code = self.report.http_status
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["report"] = self.report
        return context

    def render_to_response_json(self, status: int) -> JsonResponse:
        report = self.report
        return JsonResponse(report.as_dict(), status=report.http_status)


class ReadinessView(HealthDashboardView):
    """Critical checks only, always JSON, no login."""

    critical_only = True

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        checks: list[HealthCheck] = list(self.get_checks())
        with self.get_executor() as executor:
            self.results = await asyncio.gather(*(c.get_result(executor) for c in checks))
        report = self.report
        return JsonResponse(
            {
                "status": "ok" if report.http_status == 200 else "unavailable",
                # States only: the reasons are on the dashboard, for those allowed to see it.
                "checks": {o.name: o.state for o in report.outcomes},
            },
            status=report.http_status,
        )


async def _refuse_unless_admin_or_probe(request: HttpRequest) -> HttpResponseBase | None:
    if probe_allowed(request):
        return None
    user = await request.auser()
    if await sync_to_async(is_monitoring_admin)(user):
        # An administrator's session counts only after the second factor (accounts'
        # middleware sends them to the code page first; this holds even without it).
        return await sync_to_async(two_factor_gate)(request)
    wants_html = "format" not in request.GET and "json" not in request.headers.get("accept", "")
    if not user.is_authenticated and wants_html:
        return redirect_to_login(request.get_full_path())
    raise PermissionDenied("Monitoring is for district administrators.")


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not probe_allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


@never_cache
@login_required
def performance(request: HttpRequest) -> HttpResponse:
    """Latency, traffic, slow queries, backups and disk over a window (?hours=1|6|24|168)."""
    if not is_monitoring_admin(request.user):
        raise PermissionDenied("Monitoring is for district administrators.")
    if refused := two_factor_gate(request):
        return refused
    try:
        hours = int(request.GET.get("hours", ""))
    except ValueError:
        hours = selectors.DEFAULT_WINDOW
    window = selectors.window_get(hours=hours)
    return render(request, "monitoring/performance.html", performance_context(window))


def performance_context(window: selectors.Window) -> dict[str, Any]:
    requests = selectors.request_series_get(window=window)
    bins = window.bins
    latency_lines = []
    for name, per_bin in requests.per_route_bin.items():
        latency_lines.append(
            charts.Series(label=f"{name} p95", points=[(b, _p(per_bin.get(b), 0.95)) for b in bins])
        )
    for index, (name, per_bin) in enumerate(requests.per_route_bin.items()):
        latency_lines.append(
            charts.Series(
                label=f"{name} p50",
                points=[(b, _p(per_bin.get(b), 0.50)) for b in bins],
                color=charts.PALETTE[index % len(charts.PALETTE)],
                dashed=True,
            )
        )
    per_minute = [
        (b, (requests.per_bin[b].requests if b in requests.per_bin else 0) / window.bin_minutes)
        for b in bins
    ]
    errors_per_minute = [
        (
            b,
            (requests.per_bin[b].server_errors if b in requests.per_bin else 0)
            / window.bin_minutes,
        )
        for b in bins
    ]
    slow = selectors.slow_query_counts_get(window=window)
    host = selectors.host_series_get(window=window)
    backups = selectors.backup_runs_get(since=timezone.now() - datetime.timedelta(days=30))
    has_requests = requests.total.requests > 0
    return {
        "window": window,
        "windows": list(selectors.WINDOWS),
        "routes": requests.routes,
        "total": requests.total,
        "latency_chart": charts.line_chart(
            title="Latency p95 (solid) and p50 (dashed) of the busiest routes",
            series=latency_lines,
            unit=" ms",
            start=window.start,
            end=window.end,
        )
        if has_requests
        else None,
        "traffic_chart": charts.line_chart(
            title="Requests per minute",
            series=[
                charts.Series(label="requests / min", points=per_minute),
                charts.Series(label="5xx / min", points=errors_per_minute, color=charts.PALETTE[4]),
            ],
            start=window.start,
            end=window.end,
        )
        if has_requests
        else None,
        "slow_chart": charts.line_chart(
            title="Slow queries per bin",
            series=[
                charts.Series(label="slow queries", points=[(b, slow.get(b, 0)) for b in bins])
            ],
            start=window.start,
            end=window.end,
        )
        if slow
        else None,
        "slow_summary": selectors.slow_query_summary_get(since=window.start, limit=10),
        "disk_chart": charts.line_chart(
            title="Disk, memory and CPU use",
            series=[
                charts.Series(label="disk %", points=[(p.moment, p.disk_percent) for p in host]),
                charts.Series(
                    label="memory %", points=[(p.moment, p.memory_percent) for p in host]
                ),
                charts.Series(label="CPU %", points=[(p.moment, p.cpu_percent) for p in host]),
            ],
            unit=" %",
            start=window.start,
            end=window.end,
        )
        if host
        else None,
        "latest_host": host[-1] if host else None,
        "backup_size_chart": charts.bar_chart(
            title="Backup size per run",
            bars=[
                (f"{timezone.localtime(b.started_at):%m-%d %H:%M}", (b.size_bytes or 0) / 1024**2)
                for b in backups
            ],
            unit=" MB",
        )
        if backups
        else None,
        "backup_duration_chart": charts.bar_chart(
            title="Backup duration per run",
            bars=[
                (f"{timezone.localtime(b.started_at):%m-%d %H:%M}", b.duration_seconds or 0.0)
                for b in backups
            ],
            unit=" s",
            color=charts.PALETTE[1],
        )
        if backups
        else None,
    }


def _p(figures: selectors.RouteFigures | None, q: float) -> float | None:
    if figures is None:
        return None
    return figures.p50 if q == 0.5 else figures.p95
