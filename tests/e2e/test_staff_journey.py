"""A teacher's day in a real browser: log in, find a student, take attendance, enter grades,
download a report card. Each page is saved as a screenshot under docs/screenshots/."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from students.demo import demo_data_create
from students.models import AttendanceRecord, Grade, StaffMember, Student

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "e2e-demo-password-1234"


@pytest.fixture
def demo_school(transactional_db, settings):
    settings.DEMO_PASSWORD = PASSWORD
    demo_data_create(schools=1, students_per_school=120, seed=7, attendance_days=15)
    teacher = (
        StaffMember.objects.filter(role=StaffMember.Role.TEACHER).select_related("user").first()
    )
    return teacher


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/$"))


def test_teacher_journey(page, live_server, demo_school, shoot) -> None:
    teacher = demo_school
    page.goto(f"{live_server.url}/accounts/login/")
    shoot(page, "login")
    log_in(page, live_server, teacher.user.username)
    assert page.locator("[data-testid=enrolled]").inner_text().strip() != ""

    # Find a student of the teacher's class by part of the surname.
    section = teacher.sections.first()
    student = Student.objects.filter(enrollments__section=section).order_by("last_name").first()
    page.click("text=Students")
    page.fill("input[name=q]", student.last_name[:4].lower())
    page.click("button:has-text('Search')")
    row = page.locator("[data-testid=student-table] a", has_text=student.first_name).first
    shoot(page, "student_list")
    row.click()
    page.wait_for_url(re.compile(r"/students/\d+/$"))
    assert student.last_name in page.locator("h1").inner_text()
    shoot(page, "student_profile")

    # Take today's attendance for the class: one absent, the rest present.
    page.goto(f"{live_server.url}/classes/{section.pk}/attendance/")
    page.check(f"input[name=status_{student.pk}][value=absent]")
    shoot(page, "attendance")
    page.click("button:has-text('Save attendance')")
    page.wait_for_selector(".msg.success")
    assert (
        AttendanceRecord.objects.get(student=student, date=timezone.localdate()).status == "absent"
    )
    assert AttendanceRecord.objects.filter(section=section, date=timezone.localdate()).count() == (
        Student.objects.filter(enrollments__section=section).count()
    )

    # Enter a grade.
    assessment = section.assessments.order_by("due_on").first()
    page.goto(f"{live_server.url}/assessments/{assessment.pk}/grades/")
    page.fill(f"input[name=score_{student.pk}]", "17.5")
    page.fill(f"input[name=comment_{student.pk}]", "Careful, clear working")
    shoot(page, "grades")
    page.click("button:has-text('Save grades')")
    page.wait_for_selector(".msg.success")
    grade = Grade.objects.get(assessment=assessment, student=student)
    assert str(grade.score) == "17.50" and grade.comment == "Careful, clear working"

    # The dashboard reflects the attendance just taken.
    page.click("text=Dashboard")
    shoot(page, "dashboard")
    assert "%" in page.locator("[data-testid=today-rate]").inner_text()

    # Download the report card from the profile.
    page.goto(f"{live_server.url}/students/{student.pk}/")
    with page.expect_download() as info:
        page.click("a:has-text('Report card: Term 1')")
    pdf = open(info.value.path(), "rb").read()
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000


def test_login_with_a_wrong_password_explains_and_stays(page, live_server, demo_school) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", demo_school.user.username)
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    assert "didn't match" in page.locator("[role=alert]").inner_text()
    assert page.url.endswith("/accounts/login/")
