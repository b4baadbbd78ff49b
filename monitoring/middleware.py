"""Times every request: Prometheus metrics, the per-minute figures, and the slow-query scope.

It sits right after WhiteNoise (static files never reach it) and before the session and
authentication middleware, whose queries belong to the request too. The route is the resolved
URL name (`students:student_detail`), set when the URL resolves; a URL that resolves to
nothing is `unmatched`, so labels stay a bounded set whatever paths clients try.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from . import request_stats
from .context import Scope, current_scope
from .metrics import observe_request
from .slow_queries import scope_flush

UNMATCHED = "unmatched"


class RequestMonitoringMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        scope = Scope(route=UNMATCHED)
        token = current_scope.set(scope)
        started = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            seconds = time.perf_counter() - started
            current_scope.reset(token)
            observe_request(
                route=scope.route,
                method=request.method or "",
                status=status,
                seconds=seconds,
                queries=scope.queries,
            )
            request_stats.BUFFER.add(
                route=scope.route,
                status=status,
                duration_ms=seconds * 1000.0,
                queries=scope.queries,
            )
            # Both write through the monitoring connection, after the response is built.
            scope_flush(scope)
            request_stats.flush_if_due()

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> None:
        scope = current_scope.get()
        match = request.resolver_match
        if scope is not None and match is not None:
            scope.route = match.view_name or UNMATCHED
        return None
