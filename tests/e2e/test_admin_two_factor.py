"""An administrator's first day in a real browser: the password, then the two-factor set-up
(the code computed from the key the page shows, as a phone would), the backup codes, the
pages an administrator uses (dashboard, school switch, health, performance, the admin, the
API docs) with the Content-Security-Policy on and no violation in the console, and the code
asked again at the next log-in. Pages are saved under docs/screenshots/."""

from __future__ import annotations

import re
import time
from base64 import b32decode

import pytest
from django_otp.oath import TOTP

from students.demo import demo_admin_ensure, demo_data_create
from students.models import School

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "e2e-demo-password-1234"


def phone_code(secret: str, *, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for the key typed from the set-up page."""
    totp = TOTP(b32decode(secret.replace(" ", "")), step=30, t0=0, digits=6, drift=0)
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"


@pytest.fixture
def district(transactional_db, settings):
    settings.DEMO_PASSWORD = PASSWORD
    demo_data_create(schools=2, students_per_school=15, seed=11, attendance_days=3)
    demo_admin_ensure()


def test_administrator_enrols_two_factor_and_works_under_the_csp(
    page, live_server, district, shoot
) -> None:
    problems: list[str] = []
    # Violations of the policy, and script errors. (Not "Failed to load resource": the
    # health page answers 503 without a worker, and Chromium asks the admin for /favicon.ico.)
    page.on(
        "console",
        lambda m: (
            problems.append(f"{page.url}: {m.text}")
            if "Content Security Policy" in m.text or "Refused to" in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/two-factor/setup/"))
    assert page.locator("[data-testid=totp-qr] svg").count() == 1
    shoot(page, "two_factor_setup")
    secret = page.locator("[data-testid=totp-secret]").inner_text()
    page.fill("#id_token", phone_code(secret))
    page.click("button:has-text('Confirm')")
    codes = page.locator("[data-testid=backup-codes] li")
    assert codes.count() == 10
    shoot(page, "two_factor_backup_codes")
    page.click("text=Continue")
    page.wait_for_url(re.compile(r"/dashboard/$"))

    # The school switcher submits itself (a script file now, not an inline handler).
    other = School.objects.order_by("name").last()
    page.select_option("#school-switch", str(other.pk))
    page.wait_for_function(
        "name => document.querySelector('#school-switch option:checked').textContent === name",
        arg=other.name,
    )
    for path, ready in [
        ("/students/", "[data-testid=student-table]"),
        ("/health/", "body"),
        ("/monitoring/performance/", "body"),
        ("/admin/", "#content"),
        ("/admin/students/student/", "#changelist"),
        ("/admin/axes/accessattempt/", "#changelist"),
        ("/accounts/security/", "h1"),
        ("/api/v1/docs/", "body"),
    ]:
        response = page.goto(f"{live_server.url}{path}")
        # The health page answers 503 while a check fails (no Celery worker here): still a page.
        assert response is not None and (response.status < 400 or path == "/health/"), path
        page.wait_for_selector(ready)
        assert "/two-factor/" not in page.url, path
    page.wait_for_selector(".swagger-ui .info", timeout=20_000)  # Swagger UI ran its script
    shoot(page, "api_docs")

    # Next log-in: the code is asked again (the next period's: each code works once).
    page.goto(f"{live_server.url}/accounts/security/")
    page.click("button:has-text('Log out')")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/two-factor/verify/"))
    shoot(page, "two_factor_verify")
    page.fill("#id_token", phone_code(secret, steps_ahead=1))
    page.click("button:has-text('Verify')")
    page.wait_for_url(re.compile(r"/dashboard/$"))

    assert not problems, "\n".join(problems)
