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


def _list(client, **params):
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(reverse("students:student_list"), {"status": "", **params})
    assert page.status_code == 200
    searches = [q["sql"] for q in ctx.captured_queries if 'FROM "students_student"' in q["sql"]]
    return page, searches


def test_a_search_page_and_its_total_come_from_one_query(client, db, settings) -> None:
    """COUNT(*) OVER (): the matching runs once per page, not once for the page and once
    more for the paginator's COUNT; pages, totals and the bad-page rules stay Django's."""
    school = build_school("Paging", students=7)
    settings.STUDENTS_PER_PAGE = 3
    client.force_login(school.admin)
    every = [
        s.pk
        for s in client.get(reverse("students:student_list"), {"status": ""})
        .context["page"]
        .paginator.object_list
    ]
    assert len(every) == 8  # and the outsider, in another class

    seen = []
    for number in ("1", "2", "3"):
        page, searches = _list(client, page=number)
        assert len(searches) == 1, searches  # no separate COUNT
        assert "OVER ()" in searches[0]
        assert page.context["page"].paginator.count == 8
        assert page.context["page"].paginator.num_pages == 3
        assert page.context["page"].number == int(number)
        seen += [s.pk for s in page.context["page"]]
        assert f"Page {number} of 3".encode() in page.content
    assert seen == every  # each student once, in the list's order

    page, _ = _list(client, page="99")  # past the end: the last page, as Django does
    assert page.context["page"].number == 3 and len(page.context["page"]) == 2
    page, _ = _list(client, page="x")  # not a number: the first
    assert page.context["page"].number == 1
    page, searches = _list(client, q="nobody-is-called-this")
    assert page.context["page"].paginator.count == 0 and len(searches) == 1
    assert b"No students match" in page.content


def test_the_search_page_counts_nothing_apart(client, world) -> None:
    """Neither the list nor the filter's drop-downs run a COUNT of their own (list() of a
    ModelChoiceIterator asks its length, a COUNT per drop-down)."""
    client.force_login(world.registrar)
    client.get(reverse("students:student_list"))  # the identity and access, cached
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(reverse("students:student_list"), {"q": "a"})
    assert page.status_code == 200
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1 and "OVER ()" in counts[0], counts
    assert world.section.name.encode() in page.content  # the drop-down is still filled


def test_the_filter_drop_downs_are_the_markup_django_would_write(client, world) -> None:
    """The filter's <select>s are written in Python (PlainSelect), not through a template
    per option; what the browser gets is the same: same options, labels, selection."""
    from html.parser import HTMLParser

    from django import forms

    from students.forms import StudentFilterForm

    class Options(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[tuple[str, tuple]] = []

        def handle_starttag(self, tag, attrs):
            self.found.append((tag, tuple(sorted(attrs))))

        def handle_data(self, data):
            if data.strip():
                self.found.append(("text", (data.strip(),)))

    def parsed(html: str) -> list[tuple[str, tuple]]:
        parser = Options()
        parser.feed(html)
        return parser.found

    from students.selectors import section_choices
    from students.tenancy import resolve_access

    access = resolve_access(world.registrar, world.school.pk)
    grade_levels = world.level.__class__.objects.filter(pk=world.level.pk)
    for data in ({"section": str(world.section.pk), "status": "withdrawn"}, {"grade_level": "x"}):
        form = StudentFilterForm(
            data, grade_levels=grade_levels, sections=section_choices(access=access)
        )
        form.is_valid()
        for name in ("grade_level", "section", "status"):
            ours = str(form[name])
            field = form.fields[name]
            field.widget = forms.Select(choices=field.choices)
            assert parsed(ours) == parsed(str(form[name])), name
        assert world.section.name in str(form["section"])


def test_page_numbers_out_of_range_follow_djangos_rules(client, db, settings) -> None:
    """Below 1, or so large that no OFFSET could reach it: the last page, never an error."""
    school = build_school("Numbers", students=4)
    settings.STUDENTS_PER_PAGE = 2
    client.force_login(school.admin)
    for number in ("0", "-3", "99999999999999999999999"):
        page, _ = _list(client, page=number)
        assert page.context["page"].number == page.context["page"].paginator.num_pages == 3
