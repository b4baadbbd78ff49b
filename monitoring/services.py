"""Monitoring writes."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from .models import Heartbeat


def heartbeat_record(*, name: str, hostname: str = "") -> Heartbeat:
    """Note that the periodic job `name` ran now (one UPSERT-like statement pair)."""
    now = timezone.now()
    updated = Heartbeat.objects.filter(name=name).update(
        last_seen=now, hostname=hostname, count=F("count") + 1
    )
    if not updated:
        Heartbeat.objects.get_or_create(
            name=name, defaults={"last_seen": now, "hostname": hostname, "count": 1}
        )
    return Heartbeat.objects.get(name=name)
