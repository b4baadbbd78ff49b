"""A URLconf for the slow-query tests: views that run slow statements on purpose."""

from __future__ import annotations

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from monitoring.services import heartbeat_record


class _Undo(Exception):
    pass


def slow_then_rolled_back(request: HttpRequest) -> HttpResponse:
    """A slow statement inside a transaction that then rolls back."""
    try:
        with transaction.atomic():
            heartbeat_record(name="rolled-back")
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(%s)", [0.2])
            raise _Undo
    except _Undo:
        pass
    return HttpResponse("rolled back")


def fast(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0)")
    return HttpResponse("fast")


urlpatterns = [
    path("slow/", slow_then_rolled_back, name="slow-rolled-back"),
    path("fast/", fast, name="fast"),
    path("", include("monitoring.urls")),
]
