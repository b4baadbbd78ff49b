"""Refused attempts to open records are on the audit trail: who, what, when, from where."""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import ApiToken
from api.services import api_token_create
from audit.models import AuditEvent
from audit.refusals import ACCESS_REFUSED
from audit.selectors import COMMON_ACTIONS

pytestmark = pytest.mark.django_db

PROBER = "203.0.113.9"  # where the test's requests come from


def refusals() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=ACCESS_REFUSED).order_by("id"))


def test_a_teacher_asking_for_another_schools_student_is_recorded(
    client, world, other_world
) -> None:
    stranger = other_world.students[0]
    client.force_login(world.teacher)
    before = timezone.now()
    url = reverse("students:student_detail", args=[stranger.pk])
    assert client.get(url, REMOTE_ADDR=PROBER).status_code == 404

    [event] = refusals()
    assert event.actor == world.teacher and event.actor_repr == world.teacher.username
    assert event.school_id == world.school.pk  # the trail of the school they work at
    assert event.ip_address == PROBER
    assert before <= event.created_at <= timezone.now()
    assert event.changes["record"] == "student"
    assert event.changes["id"] == str(stranger.pk)
    assert event.changes["path"] == url
    assert event.changes["reason"] == "not found"
    # The child of the other school is not tied to this school's trail entry.
    assert event.student_id is None


def test_a_teacher_opening_another_class_register_is_recorded(client, world) -> None:
    client.force_login(world.teacher)
    url = reverse("students:attendance_take", args=[world.other_section.pk])
    assert client.get(url, REMOTE_ADDR=PROBER).status_code == 404
    assert client.post(url, {}, REMOTE_ADDR=PROBER).status_code == 404

    events = refusals()
    assert [(e.changes["method"], e.changes["record"]) for e in events] == [
        ("GET", "class"),
        ("POST", "class"),
    ]
    assert all(e.changes["id"] == str(world.other_section.pk) for e in events)
    assert all(e.changes["page"] == "students:attendance_take" for e in events)
    assert all(e.actor == world.teacher and e.ip_address == PROBER for e in events)


def test_permitted_pages_record_no_refusal(client, world) -> None:
    client.force_login(world.teacher)
    for url in (
        reverse("students:dashboard"),
        reverse("students:student_detail", args=[world.students[0].pk]),
        reverse("students:attendance_take", args=[world.section.pk]),
        reverse("students:section_detail", args=[world.section.pk]),
        reverse("students:student_list"),
    ):
        assert client.get(url).status_code == 200, url
    assert refusals() == []


def test_a_role_refused_an_action_is_recorded(client, world) -> None:
    """A 403 (the auditor may read the report-card page, not start a batch)."""
    client.force_login(world.auditor)
    url = reverse("reportcards:section", args=[world.section.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"term": world.term.pk, "scope": "section"}).status_code == 403
    [event] = refusals()
    assert event.actor == world.auditor and event.changes["reason"] == "not allowed"
    assert event.changes["record"] == "class" and event.changes["method"] == "POST"


def test_anonymous_visitors_are_not_recorded(client, world) -> None:
    url = reverse("students:student_detail", args=[world.students[0].pk])
    assert client.get(url).status_code == 302  # to the log-in page
    assert refusals() == []


def test_the_api_records_its_refusals(world, other_world) -> None:
    _token, raw = api_token_create(
        user=world.teacher,
        school=world.school,
        name="probe",
        scope=ApiToken.Scope.READ_WRITE,
        actor=None,
    )
    api = APIClient(REMOTE_ADDR=PROBER)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    own = api.get(f"/api/v1/students/{world.students[0].pk}/")
    assert own.status_code == 200
    assert refusals() == []
    for student in (other_world.students[0], world.outsider):
        assert api.get(f"/api/v1/students/{student.pk}/").status_code == 404
    events = refusals()
    assert [(e.changes["record"], e.changes["id"]) for e in events] == [
        ("student", str(other_world.students[0].pk)),
        ("student", str(world.outsider.pk)),
    ]
    assert all(e.actor == world.teacher and e.school_id == world.school.pk for e in events)
    assert all(e.ip_address == PROBER for e in events)


def test_an_administrator_finds_the_refusals_on_the_trail(client, world, other_world) -> None:
    client.force_login(world.teacher)
    client.get(reverse("students:student_detail", args=[other_world.students[0].pk]))
    client.get(reverse("students:guardian_contacts", args=[world.other_section.pk]))
    client.get(reverse("students:student_detail", args=[world.students[0].pk]))  # allowed

    client.force_login(world.admin)
    trail = client.get(reverse("audit:trail"))
    assert f'href="?action={ACCESS_REFUSED}"'.encode() in trail.content  # one click away
    assert ACCESS_REFUSED in COMMON_ACTIONS
    page = client.get(reverse("audit:trail"), {"action": ACCESS_REFUSED})
    assert page.status_code == 200
    shown = list(page.context["page"])
    assert len(shown) == 2 and {e.actor_repr for e in shown} == {world.teacher.username}
    assert b"teacher-north" in page.content and b"/students/" in page.content
    # Another school's administrator does not see them.
    client.force_login(other_world.admin)
    page = client.get(reverse("audit:trail"), {"action": ACCESS_REFUSED})
    assert list(page.context["page"]) == []
    # And the day filter works on them like on any entry.
    today = timezone.localdate()
    client.force_login(world.admin)
    page = client.get(
        reverse("audit:trail"),
        {"action": ACCESS_REFUSED, "date_from": today - datetime.timedelta(days=1)},
    )
    assert len(list(page.context["page"])) == 2
