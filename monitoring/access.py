"""Who may read monitoring data: administrators in the browser, probes and scrapers by
address or token."""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest

from students.tenancy import is_district_admin

# Headers a reverse proxy adds. With one of them present the peer address is the proxy's (on
# the same host it is 127.0.0.1), so the address says nothing about the real client.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


@lru_cache(maxsize=8)
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(a, strict=False) for a in allowed)


def token_ok(request: HttpRequest) -> bool:
    """`Authorization: Bearer <MONITORING_METRICS_TOKEN>`, compared in constant time."""
    expected = settings.MONITORING_METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def address_ok(request: HttpRequest) -> bool:
    """The peer address is in MONITORING_METRICS_ALLOWED_IPS and no proxy stands between."""
    if any(h in request.META for h in PROXY_HEADERS):
        return False
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in net for net in _networks(tuple(settings.MONITORING_METRICS_ALLOWED_IPS)))


def probe_allowed(request: HttpRequest) -> bool:
    """A scraper or probe may read metrics and the health JSON."""
    return token_ok(request) or address_ok(request)


def is_monitoring_admin(user: User | AnonymousUser) -> bool:
    """District administrators and superusers: monitoring spans every school."""
    return is_district_admin(user)
