"""What a staff request costs: the student search scoped to the school (issue 9)."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.conftest import build_school


def test_guardian_search_is_scoped_to_the_school_and_finds_the_same_students(client, world) -> None:
    a = world.students[0]
    guardian = a.guardian_links.first().guardian
    guardian.first_name, guardian.last_name = "Marguerite", "Fairweather"
    guardian.save()
    # A namesake guardian at another school: its students must not show, and its rows are
    # no longer read (the subquery carries the school).
    other = build_school("Elsewhere", students=2)
    twin = other.students[0].guardian_links.first().guardian
    twin.first_name, twin.last_name = "Marguerite", "Fairweather"
    twin.save()
    client.force_login(world.admin)

    with CaptureQueriesContext(connection) as ctx:
        page = client.get(reverse("students:student_list"), {"q": "fairweather", "status": ""})
    assert page.status_code == 200
    assert {s.pk for s in page.context["page"]} == {a.pk}
    search_sql = [q["sql"] for q in ctx.captured_queries if "students_guardian g" in q["sql"]]
    assert search_sql, "the guardian subquery ran"
    assert all(f"g.school_id = {world.school.pk}" in sql for sql in search_sql)
