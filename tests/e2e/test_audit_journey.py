"""An auditor in a real browser: the school's trail, and who has seen one child's record."""

from __future__ import annotations

import re

import pytest

from students.demo import demo_data_create
from students.models import StaffMember, Student

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "e2e-demo-password-1234"


@pytest.fixture
def demo_auditor(transactional_db, settings):
    settings.DEMO_PASSWORD = PASSWORD
    demo_data_create(schools=1, students_per_school=30, seed=11, attendance_days=3)
    return StaffMember.objects.filter(role=StaffMember.Role.AUDITOR).select_related("user").get()


def test_auditor_browses_the_trail_and_a_childs_disclosures(
    page,
    live_server,
    demo_auditor,
    shoot,
) -> None:
    username = demo_auditor.user.username
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/$"))

    page.click("nav.mainnav >> text=Audit")
    page.wait_for_url(re.compile(r"/audit/$"))
    table = page.locator("[data-testid=trail-table]")
    assert "login" in table.inner_text() and username in table.inner_text()
    page.fill("input[name=action]", "login")
    page.click("button:has-text('Filter')")
    assert "login" in page.locator("[data-testid=trail-table] tbody tr").first.inner_text()
    shoot(page, "audit_trail")

    student = Student.objects.order_by("last_name").first()
    assert student is not None
    page.goto(f"{live_server.url}/students/{student.pk}/")
    page.click("text=Who has seen this record")
    page.wait_for_url(re.compile(r"/disclosures/$"))
    rows = page.locator("[data-testid=disclosure-table] tbody tr")
    assert username in rows.first.inner_text() and "view" in rows.first.inner_text()
    # An auditor reads the trail but may not export a whole record.
    assert page.locator("[data-testid=subject-access]").count() == 0
    shoot(page, "audit_disclosures")
