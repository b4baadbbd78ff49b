"""No button leads to "not allowed": each role of the demo school walks the pages it reaches
from the navigation and the dashboard, follows every link and checks every form on them, and
is never answered 403 (or, for a record it was shown, 404).

A read-only auditor is offered no form that writes. A form that writes is checked by opening
its page and, for the roles that may write, by submitting it as the page fills it in (in a
savepoint that is rolled back). Nothing the walk does may write an "access_refused" entry.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from django.db import transaction
from django.test import Client
from django.urls import Resolver404, resolve, reverse

from audit.models import AuditEvent
from audit.refusals import ACCESS_REFUSED
from students.models import School

pytestmark = [pytest.mark.django_db]

PER_PAGE_KIND = 3  # pages of one kind (URL name) visited: their links differ only by ids
MAX_PAGES = 160
# The forms a read-only role may still submit: they change nothing of the school's (signing
# out, the school worked in, the user's own password and second factor). Not submitted here.
READ_ONLY_FORMS = {
    "logout",
    "students:switch_school",
    "accounts:account",
    "accounts:password_change",
    "accounts:two_factor_setup",
}
SKIPPED_PREFIXES = ("/static/", "/admin/", "/media/")


@dataclass
class Form:
    action: str
    method: str
    multipart: bool
    fields: list[tuple[str, str]] = field(default_factory=list)


class PageParser(HTMLParser):
    """The links and forms of a page, each form with the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[Form] = []
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        form = self.forms[-1] if self.forms else None
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "form":
            self.forms.append(
                Form(
                    action=a.get("action", ""),
                    method=a.get("method", "get").lower(),
                    multipart="multipart" in a.get("enctype", ""),
                )
            )
        elif form is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in {"submit", "button", "file", "image", "reset"}:
                return
            if kind in {"radio", "checkbox"} and "checked" not in a:
                return
            form.fields.append((a["name"], a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "button" and a.get("name") and a.get("type", "submit") == "submit":
            form.fields.append((a["name"], a.get("value", "")))
        elif tag == "select" and a.get("name"):
            self._select = (a["name"], [])
        elif tag == "option" and self._select is not None:
            self._select[1].append((a.get("value", ""), "selected" in a))
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            form.fields.append((a["name"], ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None and self.forms:
            name, options = self._select
            chosen = [v for v, selected in options if selected] or [v for v, _s in options[:1]]
            self.forms[-1].fields += [(name, v) for v in chosen]
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _page_kind(url: str) -> str | None:
    path = urlsplit(url).path
    if path.startswith(SKIPPED_PREFIXES):
        return None
    try:
        match = resolve(path)
    except Resolver404:
        return "unresolved"
    return match.view_name


def _get(client: Client, url: str):  # type: ignore[no-untyped-def]
    response = client.get(url)
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)
    return response


@dataclass
class Walk:
    visited: Counter[str] = field(default_factory=Counter)
    forms_checked: set[tuple[str, str]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _refused(status: int) -> bool:
    return status in {403, 404}


def walk(client: Client, start: list[str], *, may_write: bool) -> Walk:
    result = Walk()
    queue: deque[tuple[str, str]] = deque((url, "the navigation") for url in start)
    seen: set[str] = set()
    while queue and sum(result.visited.values()) < MAX_PAGES:
        url, found_on = queue.popleft()
        kind = _page_kind(url)
        if kind is None or url in seen or result.visited[kind] >= PER_PAGE_KIND:
            continue
        seen.add(url)
        result.visited[kind] += 1
        response = _get(client, url)
        if _refused(response.status_code):
            result.problems.append(f"{url} (on {found_on}) answers {response.status_code}")
            continue
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        page = PageParser()
        page.feed(response.content.decode())
        for href in page.links:
            target = urljoin(url, href)
            if target.startswith("/") and not target.startswith("//"):
                queue.append((target, url))
        for form in page.forms:
            _check_form(client, url, form, may_write, result, queue)
    return result


def _check_form(
    client: Client,
    page_url: str,
    form: Form,
    may_write: bool,
    result: Walk,
    queue: deque[tuple[str, str]],
) -> None:
    action = urljoin(page_url, form.action or page_url)
    kind = _page_kind(action)
    if kind is None or (kind, form.method) in result.forms_checked:
        return
    result.forms_checked.add((kind, form.method))
    if form.method == "get":
        # A filter or a date picker: submitted as the page fills it in, then walked on.
        query = urlencode(form.fields)
        queue.appendleft((f"{urlsplit(action).path}?{query}", f"a form on {page_url}"))
        return
    if kind not in READ_ONLY_FORMS and not may_write:
        result.problems.append(f"a read-only role is offered a form to {action} on {page_url}")
        return
    if kind != "logout":
        opened = _get(client, action)
        if opened.status_code == 403:
            result.problems.append(f"the form to {action} on {page_url}: its page answers 403")
    if kind in READ_ONLY_FORMS or form.multipart:  # an upload needs a file: its page will do
        return
    with transaction.atomic():
        sent = client.post(action, dict(_as_lists(form.fields)))
        transaction.set_rollback(True)
    if _refused(sent.status_code):
        result.problems.append(f"the form to {action} on {page_url} answers {sent.status_code}")


def _as_lists(fields: list[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    yield from values.items()


@pytest.fixture
def demo_school(settings) -> School:
    from students.demo import demo_data_create

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DEMO_PASSWORD = "demo-password-for-tests"
    demo_data_create(schools=2, students_per_school=60, seed=7, attendance_days=3)
    return School.objects.order_by("pk").first()


START = [
    "students:dashboard",
    "students:student_list",
    "students:section_list",
    "files:school_documents",
    "audit:trail",
    "accounts:account",
]
# Pages each role must have reached, so the walk cannot pass by seeing nothing.
MUST_REACH = {
    "auditor": {
        "students:student_detail",
        "students:section_detail",
        "students:guardian_contacts",
        "students:missing_attendance",
        "reportcards:section",
        "audit:trail",
        "audit:student_disclosures",
    },
    "teacher1": {
        "students:student_detail",
        "students:section_detail",
        "students:attendance_take",
        "students:grades_enter",
        "reportcards:section",
    },
}


@pytest.mark.parametrize("handle", sorted(MUST_REACH))
def test_no_button_leads_to_not_allowed(client, demo_school, handle) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=f"{handle}-{demo_school.code}")
    client.force_login(user)
    nav = client.get(reverse("students:dashboard"))
    assert nav.status_code == 200
    # Start from what the navigation offers (and the pages every role has).
    offered = PageParser()
    offered.feed(nav.content.decode())
    start = [reverse(name) for name in START if reverse(name) in offered.links]
    assert reverse("students:dashboard") in start

    result = walk(client, start, may_write=handle != "auditor")

    assert result.problems == []
    missing = MUST_REACH[handle] - set(result.visited)
    assert not missing, f"the walk never reached {missing}: {dict(result.visited)}"
    assert not AuditEvent.objects.filter(action=ACCESS_REFUSED).exists()
