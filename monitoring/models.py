"""Monitoring state. Business data never lives here."""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """The last time a named periodic job ran; Celery beat's liveness is read from it."""

    name = models.CharField(max_length=100, unique=True)
    last_seen = models.DateTimeField()
    hostname = models.CharField(max_length=200, blank=True)
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"
