"""Probe endpoints. The full health dashboard arrives with django-health-check."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache


@never_cache
def liveness(request: HttpRequest) -> JsonResponse:
    """The process is up and serving; touches no dependency, so a load balancer never
    restarts web nodes because the database blinked."""
    return JsonResponse({"status": "ok"})
