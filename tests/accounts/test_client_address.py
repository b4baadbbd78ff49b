"""The client's address as an attacker would try it: X-Forwarded-For written by the client is
never believed, and behind the proxies named in TRUSTED_PROXIES each client keeps its own
address, so the lockout and the audit trail hold in both layouts.

Only the test client's fake socket addresses (REMOTE_ADDR) are used; nothing is sent over a
network."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client, RequestFactory

from audit.models import AuditEvent
from school_site.proxies import client_address
from tests.accounts.conftest import password_login

pytestmark = [pytest.mark.unit]

NGINX_SAME_HOST = "127.0.0.1"
NGINX_DOCKER = "172.28.80.200"  # docker/compose.yaml pins nginx here
CLIENT_A = "198.51.100.7"
CLIENT_B = "198.51.100.8"
SPOOFED = "203.0.113.9"


def _bad_password(client: Client, username: str, **extra):
    return password_login(client, username, "wrong-password-123", **extra)


# --- the rule itself -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded_for", "expected"),
    [
        # No proxy trusted (the default): the header is the client's own words, ignored.
        ([], "127.0.0.1", SPOOFED, "127.0.0.1"),
        ([], "127.0.0.1", f"{SPOOFED}, {CLIENT_A}", "127.0.0.1"),
        ([], CLIENT_A, SPOOFED, CLIENT_A),
        # nginx on the same host appends the address it saw: the rightmost entry.
        (["127.0.0.1"], "127.0.0.1", CLIENT_A, CLIENT_A),
        (["127.0.0.1"], "127.0.0.1", f"{SPOOFED}, {CLIENT_A}", CLIENT_A),
        (["127.0.0.1", "::1"], "::1", f"{SPOOFED},{CLIENT_A}", CLIENT_A),
        # A client that talks to the app directly, past the proxy: its header is ignored.
        (["127.0.0.1"], CLIENT_A, SPOOFED, CLIENT_A),
        # Two hops of ours (a load balancer, then nginx): the first address not ours.
        (
            ["172.28.80.0/24", "10.0.0.0/8"],
            NGINX_DOCKER,
            f"{SPOOFED}, {CLIENT_A}, 10.1.2.3",
            CLIENT_A,
        ),
        # Every hop is ours (a probe inside the network): the leftmost one reached.
        (["10.0.0.0/8"], "10.0.0.2", "10.0.0.9", "10.0.0.9"),
        # Garbage where an address should be: keep the last hop that is ours.
        (["127.0.0.1"], "127.0.0.1", f"{CLIENT_A}, not-an-address", "127.0.0.1"),
        (["127.0.0.1"], "127.0.0.1", "", "127.0.0.1"),
        # IPv4 seen through a dual-stack socket.
        (["127.0.0.1"], "::ffff:127.0.0.1", f"::ffff:{CLIENT_A}", CLIENT_A),
    ],
)
def test_client_address_is_the_rightmost_hop_that_is_not_a_trusted_proxy(
    settings, trusted, peer, forwarded_for, expected
) -> None:
    settings.TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded_for)
    assert client_address(request) == expected


def test_no_proxy_is_trusted_unless_configured() -> None:
    assert settings.TRUSTED_PROXIES == []
    assert settings.AXES_CLIENT_IP_CALLABLE == "school_site.proxies.client_address"
    assert settings.MIDDLEWARE[0] == "school_site.proxies.ClientAddressMiddleware"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "[]"),
        ("127.0.0.1, 172.28.80.0/24,::1", "['127.0.0.1', '172.28.80.0/24', '::1']"),
        ("nginx", "ImproperlyConfigured"),
        ("10.0.0.0/33", "ImproperlyConfigured"),
    ],
)
def test_trusted_proxies_is_read_from_the_environment_and_checked_at_start_up(
    value, expected
) -> None:
    import subprocess

    from tests.helpers import PYTHON, REPO, subprocess_env

    out = subprocess.run(
        [PYTHON, "-c", "from django.conf import settings; print(settings.TRUSTED_PROXIES)"],
        cwd=REPO,
        env=subprocess_env(TRUSTED_PROXIES=value, SCHOOLHOUSE_ENV_FILE="/nonexistent"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert expected in (out.stdout + out.stderr), out.stderr[-500:]


# --- direct clients, no proxy trusted: the header changes nothing --------------------------------
@pytest.mark.django_db
def test_a_forged_header_neither_unlocks_nor_escapes_the_lockout(world) -> None:
    username = world.teacher.username
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _bad_password(client, username, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    # The right password with a fresh address in the header: still locked out.
    refused = password_login(client, username, HTTP_X_FORWARDED_FOR=SPOOFED)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}
    # The audit trail names the real peer, never an address the client wrote.
    failed = AuditEvent.objects.filter(action="login_failed")
    assert failed.exists()
    assert set(failed.values_list("ip_address", flat=True)) == {"127.0.0.1"}


@pytest.mark.django_db
def test_a_new_header_per_guess_still_locks_after_the_limit(world) -> None:
    username = world.registrar.username
    client = Client()
    answers = [
        _bad_password(client, username, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(12)
    ]
    limit = settings.AXES_FAILURE_LIMIT
    assert answers[: limit - 1] == [200] * (limit - 1)
    assert answers[limit - 1 :] == [429] * (12 - limit + 1)


# --- behind a trusted proxy: clients are told apart ---------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("nginx", [NGINX_SAME_HOST, NGINX_DOCKER])
def test_behind_the_proxy_one_clients_lockout_is_not_anothers(settings, world, nginx) -> None:
    settings.TRUSTED_PROXIES = [nginx]
    username = world.teacher.username

    def via_nginx(client_ip: str, written_by_client: str = "") -> dict[str, str]:
        # What nginx's `$proxy_add_x_forwarded_for` sends: the client's header, then the peer.
        chain = f"{written_by_client}, {client_ip}" if written_by_client else client_ip
        return {"ip": nginx, "HTTP_X_FORWARDED_FOR": chain, "HTTP_X_REAL_IP": client_ip}

    attacker = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _bad_password(attacker, username, **via_nginx(CLIENT_A))
    assert password_login(attacker, username, **via_nginx(CLIENT_A)).status_code == 429
    # Claiming to be the colleague in the header does not borrow their address.
    assert password_login(attacker, username, **via_nginx(CLIENT_A, CLIENT_B)).status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {CLIENT_A}

    colleague = Client()
    signed_in = password_login(colleague, username, **via_nginx(CLIENT_B))
    assert signed_in.status_code == 302 and signed_in["Location"] == "/dashboard/"
    login = AuditEvent.objects.filter(action="login").latest("pk")
    assert login.ip_address == CLIENT_B
    assert set(
        AuditEvent.objects.filter(action="login_failed").values_list("ip_address", flat=True)
    ) == {CLIENT_A}


# --- the docker layout and the settings agree ----------------------------------------------------
def test_docker_trusts_exactly_its_nginx_which_appends_to_the_header() -> None:
    import ipaddress
    import re
    from pathlib import Path

    import yaml

    docker = Path(__file__).resolve().parents[2] / "docker"
    compose = yaml.safe_load((docker / "compose.yaml").read_text(encoding="utf-8"))
    nginx_address = ipaddress.ip_address(
        compose["services"]["nginx"]["networks"]["default"]["ipv4_address"]
    )
    assert str(nginx_address) == NGINX_DOCKER
    trusted = compose["services"]["web"]["environment"]["TRUSTED_PROXIES"]
    default = re.fullmatch(r"\$\{TRUSTED_PROXIES:-(.+)\}", trusted)
    assert default is not None, trusted
    assert [ipaddress.ip_network(n) for n in default.group(1).split(",")] == [
        ipaddress.ip_network(nginx_address)
    ]
    # nginx's address is in the network but outside the range Docker hands out to the others.
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    assert nginx_address in ipaddress.ip_network(pool["subnet"])
    assert nginx_address not in ipaddress.ip_network(pool["ip_range"])
    # nginx appends the peer (the rightmost entry is the one the app takes), never replaces.
    conf = (docker / "nginx.conf").read_text(encoding="utf-8")
    assert re.search(r"proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;", conf)
