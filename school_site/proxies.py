"""The client's address: the one answer the lockout, the audit trail and every other reader of
the request's address share.

X-Forwarded-For is a list anyone can write. Each proxy appends the address it received the
request from, so only the entries appended by our own proxies (TRUSTED_PROXIES) are facts;
whatever the client wrote sits to their left. Reading from the right and stopping at the first
address that is not one of our proxies gives the client as our outermost proxy saw it, and
nothing the client wrote can change that.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What the request carried before ClientAddressMiddleware rewrote it (for debugging and logs).
ORIGINAL_REMOTE_ADDR = "schoolhouse.original_remote_addr"
ORIGINAL_FORWARDED_FOR = "schoolhouse.original_forwarded_for"


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


def _address(text: str | None) -> IPAddress | None:
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    # An IPv4 client seen by a dual-stack socket arrives as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(request: HttpRequest) -> str | None:
    """The address of the client that sent `request`.

    The peer (REMOTE_ADDR) is the client unless it is one of TRUSTED_PROXIES; then the
    X-Forwarded-For entries are walked from the right while each hop so far is trusted. The
    result is the rightmost address that is not a trusted proxy, or, when every hop is one of
    ours, the leftmost one reached. An unparsable entry ends the walk: it came from whoever
    the last trusted hop received the request from, and that hop's address is kept.
    """
    peer = _address(request.META.get("REMOTE_ADDR"))
    if peer is None:
        return None
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    current = peer
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        if not _trusted(current, networks):
            break
        forwarded = _address(hop)
        if forwarded is None:
            break
        current = forwarded
    return str(current)


class ClientAddressMiddleware:
    """Put the client's address where every later reader looks: REMOTE_ADDR becomes
    `client_address(request)`, and an X-Forwarded-For header is replaced by that address
    alone, so code that reads META itself (the audit trail's context, django-axes,
    monitoring's allowlist, which refuses any request that came through a proxy) can no longer
    pick an entry the client wrote. First in MIDDLEWARE, before anything reads an address."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        address = client_address(request)
        if address is not None:
            meta[ORIGINAL_REMOTE_ADDR] = meta.get("REMOTE_ADDR", "")
            meta["REMOTE_ADDR"] = address
            if "HTTP_X_FORWARDED_FOR" in meta:
                meta[ORIGINAL_FORWARDED_FOR] = meta["HTTP_X_FORWARDED_FOR"]
                meta["HTTP_X_FORWARDED_FOR"] = address
        return self.get_response(request)
