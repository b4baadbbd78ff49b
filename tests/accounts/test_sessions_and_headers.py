"""Sessions (key rotation at log-in, idle timeout, browser-close expiry), the audited
password change, the password rules, and the security headers on every page."""

from __future__ import annotations

import re
import time
from importlib import import_module
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.services import LAST_SEEN_KEY
from audit.models import AuditEvent
from tests.accounts.conftest import password_login
from tests.students.factories import PASSWORD

pytestmark = [pytest.mark.unit]

REPO = Path(__file__).resolve().parents[2]


def test_log_in_gives_a_new_session_key(world) -> None:
    """Session fixation: a key planted before log-in is worthless after it."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store["planted"] = True
    store.create()
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    assert client.session.session_key == store.session_key  # the planted one is in use
    password_login(client, world.registrar.username)
    new_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key != store.session_key
    assert not store.exists(store.session_key)
    assert client.get("/dashboard/").status_code == 200


def test_an_idle_session_is_logged_out(world) -> None:
    client = Client()
    password_login(client, world.registrar.username)
    assert client.get("/dashboard/").status_code == 200
    session = client.session
    session[LAST_SEEN_KEY] = int(time.time()) - settings.SESSION_IDLE_TIMEOUT - 5
    session.save()
    response = client.get("/students/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session
    assert client.get("/dashboard/").status_code == 302


def test_activity_keeps_the_session_and_browser_close_ends_it(world) -> None:
    client = Client()
    password_login(client, world.registrar.username)
    session = client.session
    session[LAST_SEEN_KEY] = int(time.time()) - settings.SESSION_IDLE_TIMEOUT + 120
    session.save()
    assert client.get("/dashboard/").status_code == 200
    assert client.session[LAST_SEEN_KEY] >= int(time.time()) - 5  # refreshed
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE and not cookie["expires"]
    assert cookie["httponly"]


@pytest.mark.real_two_factor
def test_password_change_is_audited_and_keeps_this_session(world) -> None:
    client = Client()
    password_login(client, world.teacher.username)
    url = reverse("accounts:password_change")
    weak = client.post(
        url, {"old_password": PASSWORD, "new_password1": "password1", "new_password2": "password1"}
    )
    assert weak.status_code == 200
    errors = " ".join(weak.context["form"].errors["new_password2"])
    assert "too short" in errors and "too common" in errors
    new = "Marigold-Harbour-Sextant-42"
    done = client.post(url, {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert done.status_code == 302
    event = AuditEvent.objects.get(action="password_change")
    assert event.actor == world.teacher
    assert client.get("/dashboard/").status_code == 200  # still logged in here
    world.teacher.refresh_from_db()
    assert world.teacher.check_password(new)


def test_password_rules(world) -> None:
    for bad in ["short1!", "123456789012345", "password12345", world.teacher.username + "1234"]:
        with pytest.raises(ValidationError):
            validate_password(bad, user=world.teacher)
    validate_password("Marigold-Harbour-Sextant-42", user=world.teacher)


def test_every_page_carries_a_strict_content_security_policy(world, client) -> None:
    client.force_login(world.admin)
    response = client.get("/dashboard/")
    csp = response["Content-Security-Policy"]
    directives = dict(
        (part.split(" ", 1) + [""])[:2] for part in (p.strip() for p in csp.split(";")) if part
    )
    assert directives["default-src"] == "'self'"
    # A nonce is added only to a page that uses one ({{ request.csp_nonce }}).
    assert re.fullmatch(r"'self'( 'nonce-[A-Za-z0-9+/=]+')?", directives["script-src"])
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    # The login page and the admin too.
    assert "Content-Security-Policy" in Client().get(reverse("login"))
    assert "Content-Security-Policy" in client.get(reverse("admin:index"))


def test_templates_have_no_inline_script_the_policy_would_block() -> None:
    """No inline event handlers (a nonce cannot allow them) and no <script> body without the
    nonce, in our templates: otherwise a page silently stops working under the policy."""
    handler = re.compile(r"\son[a-z]+\s*=\s*[\"']", re.IGNORECASE)
    inline_script = re.compile(
        r"<script(?![^>]*\bsrc=)(?![^>]*\bnonce=)(?![^>]*application/json)[^>]*>"
    )
    offenders = []
    for path in (REPO / "templates").rglob("*.html"):
        text = path.read_text()
        if handler.search(text) or inline_script.search(text):
            offenders.append(str(path.relative_to(REPO)))
    for path in REPO.glob("*/templates/**/*.html"):
        text = path.read_text()
        if handler.search(text) or inline_script.search(text):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
