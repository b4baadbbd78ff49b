"""The permission matrix: every role against every URL of the URLconf and every admin URL and
admin action, with objects of the user's own school and of another school, by GET and POST.

What each role may do is declared below, per URL name (or namespace), in `EXPECTATIONS` and
`ADMIN_EXPECTATIONS`; the test derives the requests from the URLconf and the admin registry,
so a new view or model admin that is not in the tables fails `test_every_url_is_in_the_table`
with a message saying where to add it. The assertions:

- objects of another school never answer 200 to anyone but a district administrator;
- an anonymous visitor is sent to the log-in page (401/403 for the API and the probes);
- a role may read (GET 200) exactly what the table says, and is refused (403/404/405) the rest;
- a POST by a role that may not write changes no school data: PostgreSQL's own per-table
  counters of this transaction (`pg_stat_xact_user_tables`) must not move, so a write made by
  any path (ORM, raw SQL, a trigger) is caught, not only the ones a view admits to;
- a teacher reaches only the students, classes and documents of their own sections.

Each request runs in a savepoint that is rolled back, so a delete allowed to one role does not
change what the next request sees.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import URLPattern, get_resolver, reverse

from students.tenancy import SESSION_KEY
from tests.security.conftest import MatrixWorld, table_writes, written_tables
from tests.students.test_tenancy import OBJECT_KWARGS, walk

# The health pages run their checks on the monitoring alias (a test mirror of "default").
pytestmark = [pytest.mark.unit, pytest.mark.django_db(databases=["default", "monitoring"])]

# --- roles ------------------------------------------------------------------------------------
DISTRICT = "district_admin"
ADMIN = "school_admin"
REGISTRAR = "registrar"
TEACHER = "teacher"
AUDITOR = "auditor"
ANONYMOUS = "anonymous"
NOBODY = "nobody"  # logged in, but staff of no school
ROLES = [DISTRICT, ADMIN, REGISTRAR, TEACHER, AUDITOR, ANONYMOUS, NOBODY]
# Teachers of the lead teacher's class by other assignments (MatrixWorld.assignments). Within
# their dates they are the lead teacher; outside them they teach nothing, so every object of
# the class is to them what the class they never taught is to the lead ("untaught").
TEACHING_NOW = ["co_teacher", "substitute_during"]
TEACHING_NOT_NOW = ["substitute_before", "substitute_after"]
ASSIGNMENTS = TEACHING_NOW + TEACHING_NOT_NOW
STAFF = frozenset({DISTRICT, ADMIN, REGISTRAR, TEACHER, AUDITOR})
ADMINS = frozenset({DISTRICT, ADMIN})
OFFICE = frozenset({DISTRICT, ADMIN, REGISTRAR})  # who keeps the records
CLASSROOM = frozenset({DISTRICT, ADMIN, REGISTRAR, TEACHER})
NONE: frozenset[str] = frozenset()

# What an anonymous visitor gets.
LOGIN = "login"  # a redirect to the log-in page
DENIED = "denied"  # 401 or 403 (APIs, probes, machine endpoints)
PUBLIC = "public"  # answered to anyone (liveness, the log-in page itself)


@dataclass(frozen=True)
class Access:
    """Who may do what at one URL.

    `read`: roles whose GET succeeds (200, or a redirect that is not to a log-in page).
    `write`: roles whose POST is accepted; everybody else's POST must change no school data.
    `anonymous`: what a visitor who is not logged in gets.
    `nobody`: whether a logged-in user with no school may use it (their account pages).
    `kwargs`: arguments for a URL that takes some but points at no school object.
    `post`: the body of the POST, for views that do nothing with an empty one.
    `ok_statuses`: other statuses that mean success here (503: a failing health check).
    `teacher_sections`: the object belongs to a section, so a teacher of another section of
    the same school is refused it.
    """

    read: frozenset[str]
    write: frozenset[str] = NONE
    anonymous: str = LOGIN
    nobody: bool = False
    kwargs: Callable[[MatrixWorld], dict[str, Any]] | None = None
    post: Callable[[MatrixWorld], dict[str, Any]] | None = None
    ok_statuses: frozenset[int] = frozenset()
    teacher_sections: bool = True
    resets_session: bool = False  # logs out or switches school: log in again after it
    write_method: str = "post"  # "patch" for an API object (PUT/PATCH change it; POST: 405)


def _term(w: MatrixWorld) -> dict[str, Any]:
    return {"term": w.north.term.pk, "scope": "section"}


# Keyed by URL name, or by namespace ("api:") for a whole app that shares one rule.
EXPECTATIONS: dict[str, Access] = {
    # log-in and account pages
    "login": Access(read=STAFF, write=STAFF, anonymous=PUBLIC, nobody=True),
    # Logging out is open to anyone logged in; its success is the redirect to the log-in page.
    "logout": Access(read=NONE, nobody=True, resets_session=True),
    "accounts:account": Access(read=STAFF, write=STAFF, nobody=True),
    "accounts:password_change": Access(read=STAFF, write=STAFF, nobody=True),
    "accounts:two_factor_setup": Access(read=STAFF, write=STAFF, nobody=True),
    "accounts:two_factor_verify": Access(read=STAFF, write=STAFF, nobody=True),
    # students
    "students:dashboard": Access(read=STAFF),
    "students:switch_school": Access(
        read=NONE,
        write=frozenset({DISTRICT}),
        post=lambda w: {"school": w.south.school.pk},
        resets_session=True,
    ),
    "students:student_list": Access(read=STAFF),
    "students:student_export": Access(read=STAFF),
    "students:student_import": Access(read=OFFICE, write=OFFICE),
    "students:student_detail": Access(read=STAFF),
    "students:report_card": Access(read=STAFF),
    "students:student_move": Access(read=OFFICE, write=OFFICE),
    "students:transcript": Access(read=STAFF),
    "students:section_list": Access(read=STAFF),
    "students:missing_attendance": Access(read=STAFF),
    "students:section_detail": Access(read=STAFF),
    "students:attendance_take": Access(read=CLASSROOM, write=CLASSROOM),
    "students:guardian_contacts": Access(read=STAFF),
    "students:roster_export": Access(read=STAFF),
    "students:grades_enter": Access(read=CLASSROOM, write=CLASSROOM),
    # report cards
    "reportcards:section": Access(read=STAFF, write=CLASSROOM, post=_term),
    "reportcards:batch_detail": Access(read=STAFF),
    "reportcards:batch_progress": Access(read=STAFF),
    # documents
    "files:school_documents": Access(read=STAFF, write=OFFICE),
    "files:serve": Access(read=NONE, teacher_sections=False),  # no token: refused
    "files:student_document_upload": Access(read=OFFICE, write=OFFICE),
    "files:document_detail": Access(read=STAFF),
    "files:version_upload": Access(read=OFFICE, write=OFFICE),
    "files:document_delete": Access(read=ADMINS, write=ADMINS),
    "files:version_download": Access(read=STAFF),
    "files:version_restore": Access(read=OFFICE, write=OFFICE),
    # monitoring: district administrators in the browser, probes by address or token
    "monitoring:liveness": Access(read=STAFF, anonymous=PUBLIC, nobody=True),
    "monitoring:readiness": Access(
        read=STAFF, anonymous=PUBLIC, nobody=True, ok_statuses=frozenset({503})
    ),
    "monitoring:health": Access(read=frozenset({DISTRICT}), ok_statuses=frozenset({503})),
    "monitoring:metrics": Access(read=NONE, anonymous=DENIED),
    "monitoring:performance": Access(read=frozenset({DISTRICT})),
    # backups: a signed, expiring link; a made-up token is refused to everyone
    "backups:download": Access(read=NONE, kwargs=lambda w: {"token": "not-a-real-token"}),
    # the audit trail: who saw and changed what
    "audit:trail": Access(read=frozenset({DISTRICT, ADMIN, AUDITOR})),
    "audit:trail_export": Access(read=frozenset({DISTRICT, ADMIN, AUDITOR})),
    "audit:student_disclosures": Access(read=frozenset({DISTRICT, ADMIN, AUDITOR})),
    "audit:subject_access_export": Access(read=ADMINS),
    # the REST API (/api/v1/): the pages' roles and permissions; no session or token: 401/403
    "api:api-root": Access(read=STAFF, anonymous=DENIED),
    # The schema and its documentation pages describe the API, hold no data, and are public
    # on purpose (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]) so integrators can read them.
    "api:schema": Access(read=STAFF, anonymous=PUBLIC, nobody=True),
    "api:docs": Access(read=STAFF, anonymous=PUBLIC, nobody=True),
    "api:student-list": Access(read=STAFF, write=OFFICE, anonymous=DENIED),
    "api:student-detail": Access(read=STAFF, write=OFFICE, anonymous=DENIED, write_method="patch"),
    "api:guardian-list": Access(read=STAFF, anonymous=DENIED),  # created with a student
    "api:guardian-detail": Access(read=STAFF, anonymous=DENIED, write_method="patch"),
    "api:section-list": Access(read=STAFF, anonymous=DENIED),
    "api:section-detail": Access(read=STAFF, anonymous=DENIED),
    "api:enrollment-list": Access(read=STAFF, write=OFFICE, anonymous=DENIED),
    "api:enrollment-detail": Access(read=STAFF, anonymous=DENIED, write_method="patch"),
    "api:attendance-list": Access(read=STAFF, anonymous=DENIED),
    "api:attendance-detail": Access(read=STAFF, anonymous=DENIED),
    "api:attendance-bulk": Access(read=NONE, write=CLASSROOM, anonymous=DENIED),
    "api:assessment-list": Access(read=STAFF, write=CLASSROOM, anonymous=DENIED),
    "api:assessment-detail": Access(read=STAFF, anonymous=DENIED, write_method="patch"),
    "api:assessment-grades": Access(read=STAFF, write=CLASSROOM, anonymous=DENIED),
    "api:grade-list": Access(read=STAFF, anonymous=DENIED),
    "api:grade-detail": Access(read=STAFF, anonymous=DENIED),
    "api:document-list": Access(read=STAFF, write=OFFICE, anonymous=DENIED),
    "api:document-detail": Access(read=STAFF, anonymous=DENIED, write_method="patch"),
    "api:document-serve": Access(read=NONE, anonymous=DENIED, teacher_sections=False),
    "api:document-version-list": Access(read=STAFF, anonymous=DENIED),
    "api:document-version-detail": Access(read=STAFF, anonymous=DENIED),  # immutable
    "api:document-version-download": Access(read=STAFF, anonymous=DENIED),
}

# --- the admin console ------------------------------------------------------------------------
# Only district and school administrators are staff; everybody else is sent to its log-in.


@dataclass(frozen=True)
class AdminAccess:
    view: frozenset[str]
    add: frozenset[str] = NONE
    change: frozenset[str] = NONE
    delete: frozenset[str] = NONE
    # who may POST the delete page of the world's row (None: `delete`); a row other rows
    # protect (a guardian still linked to a student) is refused to everyone
    delete_post: frozenset[str] | None = None
    # actions may run for these roles (default: those who may change)
    actions: frozenset[str] | None = None


SCHOOL_DATA = AdminAccess(view=ADMINS, add=ADMINS, change=ADMINS, delete=ADMINS)
READ_ONLY_SCHOOL_HISTORY = AdminAccess(view=ADMINS)
DISTRICT_ONLY = frozenset({DISTRICT})
SUPERUSERS_ONLY = AdminAccess(view=NONE)

# Keyed by "app_label.modelname", or by "app_label" for every model of the app.
ADMIN_EXPECTATIONS: dict[str, AdminAccess] = {
    "students": SCHOOL_DATA,
    "students.school": AdminAccess(
        view=ADMINS, add=DISTRICT_ONLY, change=DISTRICT_ONLY, delete=DISTRICT_ONLY
    ),
    "students.gradelevelchange": READ_ONLY_SCHOOL_HISTORY,
    "students.studentmove": READ_ONLY_SCHOOL_HISTORY,
    "students.absencealert": READ_ONLY_SCHOOL_HISTORY,
    "students.guardian": AdminAccess(
        view=ADMINS, add=ADMINS, change=ADMINS, delete=ADMINS, delete_post=NONE
    ),
    # documents: uploaded through the staff pages; the admin moves them to and from the trash
    "files.document": AdminAccess(view=ADMINS, change=ADMINS),
    "files.documentversion": AdminAccess(view=ADMINS),
    # Users, groups, schedules, lockouts and two-factor devices: Django's own model
    # permissions, which no role group holds, so only superusers (the operators) manage them.
    "auth": SUPERUSERS_ONLY,
    "django_celery_beat": SUPERUSERS_ONLY,
    "axes": SUPERUSERS_ONLY,
    "otp_totp": SUPERUSERS_ONLY,
    "otp_static": SUPERUSERS_ONLY,
    "backups.backuprun": AdminAccess(view=DISTRICT_ONLY, actions=DISTRICT_ONLY),
    # point-in-time recovery's records: read-only, like the runs
    "backups.restorepoint": AdminAccess(view=DISTRICT_ONLY),
    "backups.drillmark": AdminAccess(view=DISTRICT_ONLY),
    "backups.drillreceipt": AdminAccess(view=DISTRICT_ONLY),
    # one policy row: "add" while there is none
    "backups.retentionpolicy": AdminAccess(
        view=DISTRICT_ONLY, add=DISTRICT_ONLY, change=DISTRICT_ONLY
    ),
    "monitoring": AdminAccess(view=DISTRICT_ONLY),
    "monitoring.slowqueryfingerprint": AdminAccess(view=DISTRICT_ONLY, delete=DISTRICT_ONLY),
    "audit": AdminAccess(view=ADMINS),
    # a school administrator issues and revokes the tokens of their own school
    "api.apitoken": AdminAccess(view=ADMINS, add=ADMINS, change=ADMINS),  # revoked, not deleted
}
# Admin pages that belong to no model.
ADMIN_SITE_EXPECTATIONS: dict[str, Access] = {
    "admin:index": Access(read=ADMINS),
    # shown to those not (yet) in the console; its own staff are sent on to the index
    "admin:login": Access(
        read=frozenset({REGISTRAR, TEACHER, AUDITOR}), anonymous=PUBLIC, nobody=True
    ),
    "admin:logout": Access(read=NONE, anonymous=PUBLIC, nobody=True, resets_session=True),
    "admin:password_change": Access(read=ADMINS, write=ADMINS),
    "admin:password_change_done": Access(read=ADMINS),
    "admin:jsi18n": Access(read=ADMINS),
    "admin:autocomplete": Access(read=NONE),  # 403 without its query parameters
    "admin:view_on_site": Access(
        read=NONE, kwargs=lambda w: {"content_type_id": 0, "object_id": 0}
    ),
    "admin:app_list": Access(read=ADMINS, kwargs=lambda w: {"app_label": "students"}),
}
ADMIN_MODEL_SUFFIXES = ("changelist", "add", "change", "delete", "history")


def admin_rule(label: str) -> AdminAccess | None:
    return ADMIN_EXPECTATIONS.get(label) or ADMIN_EXPECTATIONS.get(label.split(".")[0])


def rule_for(name: str) -> Access | None:
    if name in EXPECTATIONS:
        return EXPECTATIONS[name]
    if name in ADMIN_SITE_EXPECTATIONS:
        return ADMIN_SITE_EXPECTATIONS[name]
    namespace = name.rpartition(":")[0]
    while namespace:
        if f"{namespace}:" in EXPECTATIONS:
            return EXPECTATIONS[f"{namespace}:"]
        namespace = namespace.rpartition(":")[0]
    return None


# --- the URLconf, as requests -----------------------------------------------------------------
@dataclass
class Probe:
    """One URL to try, with the objects it points at."""

    name: str
    rule: Access
    kind: str  # "plain", "own", "other", "untaught"
    url: str
    post: dict[str, Any] = field(default_factory=dict)
    model_label: str = ""  # admin: the model it belongs to ("" for the site's own pages)


def _admin_models() -> dict[str, type]:
    """Admin URL name prefix ("admin:students_student_") -> model."""
    return {f"admin:{m._meta.app_label}_{m._meta.model_name}_": m for m in admin.site._registry}


def _admin_model_of(name: str) -> type | None:
    for prefix, model in sorted(_admin_models().items(), key=lambda kv: -len(kv[0])):
        if name.startswith(prefix):
            return model
    return None


def _school_object(model: type, w: Any) -> Any:
    from students.models import School

    if model is School:
        return w.school
    if not any(f.name == "school" for f in model._meta.fields):
        return None
    return model._default_manager.filter(school=w.school).order_by("pk").first()


def _global_object(model: type) -> Any:
    return model._default_manager.order_by("pk").first()


def all_named_urls() -> list[tuple[str, URLPattern]]:
    return sorted(
        ((n, p) for n, p in walk(get_resolver().url_patterns) if not n.startswith("djdt:")),
        key=lambda item: item[0],
    )


def uncovered_urls() -> list[str]:
    """URL names no table says anything about."""
    missing = []
    for name, pattern in all_named_urls():
        if name.startswith("admin:"):
            model = _admin_model_of(name)
            if model is not None:
                if admin_rule(model._meta.label_lower) is None:
                    missing.append(f"{name} (ADMIN_EXPECTATIONS[{model._meta.label_lower!r}])")
                continue
            if name not in ADMIN_SITE_EXPECTATIONS:
                missing.append(f"{name} (ADMIN_SITE_EXPECTATIONS)")
            continue
        rule = rule_for(name)
        if rule is None:
            missing.append(f"{name} (EXPECTATIONS)")
        elif pattern.pattern.regex.groups and rule.kwargs is None and name not in OBJECT_KWARGS:
            missing.append(f"{name} (OBJECT_KWARGS in tests/students/test_tenancy.py, or kwargs=)")
    return missing


def _untaught_kwargs(name: str, w: MatrixWorld) -> dict[str, Any]:
    """OBJECT_KWARGS for the class the teacher does not teach. The tenancy walker's document
    is one per school whatever the class, so the outsider's document stands in for it."""
    from files.models import Document

    kwargs = OBJECT_KWARGS[name](w.untaught)
    if kwargs != OBJECT_KWARGS[name](w.north):
        return kwargs
    taught = Document.objects.get(school=w.north.school, title="Walker document")
    outsider = Document.objects.get(school=w.north.school, title="Outsider document")
    swap = {taught.pk: outsider.pk}
    if "version" in name and name != "files:version_upload":
        swap = {taught.current_version_id: outsider.current_version_id}
    swapped = {key: swap.get(value, value) for key, value in kwargs.items()}
    assert swapped != kwargs, (
        f"{name}: its OBJECT_KWARGS entry gives the same object for every class; teach "
        "_untaught_kwargs which object of the untaught class to use"
    )
    return swapped


def probes(w: MatrixWorld, role: str) -> Iterator[Probe]:
    for name, pattern in all_named_urls():
        if name.startswith("admin:") and _admin_model_of(name) is not None:
            yield from _admin_probes(w, name, pattern)
            continue
        rule = rule_for(name)
        assert rule is not None, uncovered_urls()
        post = rule.post(w) if rule.post else {}
        if not pattern.pattern.regex.groups:
            yield Probe(name, rule, "plain", reverse(name), post)
        elif rule.kwargs is not None:
            yield Probe(name, rule, "plain", reverse(name, kwargs=rule.kwargs(w)), post)
        else:
            # Outside their dates the class is not theirs: its objects are "untaught".
            own = "untaught" if role in TEACHING_NOT_NOW and rule.teacher_sections else "own"
            yield Probe(name, rule, own, reverse(name, kwargs=OBJECT_KWARGS[name](w.north)), post)
            yield Probe(
                name, rule, "other", reverse(name, kwargs=OBJECT_KWARGS[name](w.south)), post
            )
            if _as_role(role) == TEACHER and rule.teacher_sections:
                kwargs = _untaught_kwargs(name, w)
                yield Probe(name, rule, "untaught", reverse(name, kwargs=kwargs), post)


def _admin_probes(w: MatrixWorld, name: str, pattern: URLPattern) -> Iterator[Probe]:
    model = _admin_model_of(name)
    assert model is not None
    label = model._meta.label_lower
    rule = _admin_url_rule(name, label)
    arg_names = list(pattern.pattern.regex.groupindex)
    if not arg_names:
        yield Probe(name, rule, "plain", reverse(name), model_label=label)
        return
    own = _school_object(model, w.north)
    other = _school_object(model, w.south)
    if own is None and other is None:  # not a school's row: one kind, any row
        own = _global_object(model)
    for kind, obj in (("own", own), ("other", other)):
        if obj is None:
            continue
        post = {"post": "yes"} if name.endswith("_delete") else {}
        url = reverse(name, kwargs=dict.fromkeys(arg_names, obj.pk))
        yield Probe(name, rule, kind, url, post, model_label=label)


def _admin_url_rule(name: str, label: str) -> Access:
    """The Access of one admin URL of a model, from its AdminAccess."""
    rules = admin_rule(label)
    assert rules is not None
    suffix = name.rsplit("_", 1)[-1]
    if suffix in ("changelist", "history"):
        return Access(read=rules.view, write=rules.change | rules.delete)
    if suffix == "add":
        return Access(read=rules.add, write=rules.add)
    if suffix == "change":
        return Access(read=rules.view, write=rules.change)
    if suffix == "delete":
        return Access(
            read=rules.delete,
            write=rules.delete if rules.delete_post is None else rules.delete_post,
        )
    # A model admin's own page (rollover, run a backup...): those who may change the model.
    writers = rules.actions if rules.actions is not None else rules.change
    return Access(read=writers, write=writers)


# --- requests and verdicts --------------------------------------------------------------------
REFUSED = {401, 403, 404, 405}
TIMINGS: list | None = [] if os.environ.get("MATRIX_TIMINGS") else None
OUTSIDE = "203.0.113.7"  # a browser on the internet, not a probe on the monitoring allowlist


def _as_role(role: str) -> str:
    """The role a teaching assignment's teacher is judged as: a teacher's."""
    return TEACHER if role in ASSIGNMENTS else role


def _user_for(w: MatrixWorld, role: str) -> Any:
    if role in ASSIGNMENTS:
        return w.assignments[role]
    return {
        DISTRICT: w.district,
        ADMIN: w.north.admin,
        REGISTRAR: w.north.registrar,
        TEACHER: w.north.teacher,
        AUDITOR: w.north.auditor,
        NOBODY: w.nobody,
        ANONYMOUS: None,
    }[role]


def _log_in(client: Client, w: MatrixWorld, role: str) -> None:
    user = _user_for(w, role)
    client.logout()
    if user is None:
        return
    client.force_login(user)
    if role == DISTRICT:  # district administrators work in one school at a time: North
        session = client.session
        session[SESSION_KEY] = w.north.school.pk
        session.save()


def _send(client: Client, method: str, url: str, data: dict[str, Any]) -> tuple[int, str, set]:
    """Status, redirect target and the school tables written, all rolled back afterwards."""
    before = table_writes()
    started = time.perf_counter()
    with transaction.atomic():
        try:
            if method == "get":
                response = client.get(url, REMOTE_ADDR=OUTSIDE)
            elif method == "patch":
                response = client.patch(
                    url, data, content_type="application/json", REMOTE_ADDR=OUTSIDE
                )
            else:
                response = client.post(url, data, REMOTE_ADDR=OUTSIDE)
        except Exception as exc:  # a 500: report it with the others, then fail
            return 500, f"{type(exc).__name__}: {exc}", set()
        finally:
            transaction.set_rollback(True)
    written = written_tables(before, table_writes())
    if TIMINGS is not None:
        TIMINGS.append((time.perf_counter() - started, method, url))
    return response.status_code, response.get("Location", ""), written


def _is_login_redirect(status: int, location: str, probe: Probe | None = None) -> bool:
    """A redirect to a log-in page, or to the two-factor code that completes one: a gate, not
    access."""
    gates: tuple[str, ...] = (reverse("login"), reverse("admin:login"))
    if not (probe and probe.name.startswith("accounts:two_factor")):  # they lead to each other
        gates += (reverse("accounts:two_factor_setup"), reverse("accounts:two_factor_verify"))
    return status == 302 and location.split("?")[0].endswith(gates)


def _succeeded(probe: Probe, status: int, location: str) -> bool:
    if status in probe.rule.ok_statuses:
        return True
    if not (200 <= status < 400) or _is_login_redirect(status, location, probe):
        return False
    # The admin answers an object it cannot show with a redirect to its index.
    return not (
        probe.name.startswith("admin:") and status == 302 and location == reverse("admin:index")
    )


def _verdict(probe: Probe, role: str, method: str, result: tuple[int, str, set]) -> str | None:
    """What is wrong with this answer, or None."""
    status, location, written = result
    rule = probe.rule
    role = _as_role(role)
    if status == 500:
        return f"server error: {location}"
    allowed_roles = rule.read if method == "get" else rule.write
    is_login_gate = _is_login_redirect(status, location, probe)
    if role == ANONYMOUS:
        if rule.anonymous == PUBLIC:
            return None
        if rule.anonymous == DENIED:
            return None if status in (401, 403) else "anonymous not refused with 401/403"
        if status == 405:  # the method is refused before anything else is looked at
            return None
        if not (is_login_gate and location.startswith((reverse("login"), reverse("admin:login")))):
            return "anonymous not sent to the log-in page"
        return None
    if written and (role not in allowed_roles or probe.kind in ("other", "untaught")):
        if not (role == DISTRICT and probe.kind == "other"):
            return f"wrote {sorted(written)} without the right to"
    if role == AUDITOR and written:
        return f"an auditor changed {sorted(written)}"
    success = _succeeded(probe, status, location)
    if probe.kind == "other":
        if role == DISTRICT:
            return None  # may see every school; which one it answers for is its session's
        if status == 200 or (success and probe.name.startswith("admin:")):
            return "another school's object was shown"
        if not probe.name.startswith("admin:") and status not in REFUSED:
            return "another school's object was not refused"
        return None
    if probe.kind == "untaught":
        return None if not success else "a teacher reached a class they do not teach"
    if role == NOBODY and rule.nobody:
        return None
    if method != "get":
        # A POST the role may make must not be refused; one it may not make must be refused
        # or harmless (its writes are checked above).
        if role in allowed_roles and (status in REFUSED or is_login_gate):
            return "refused a POST this role may make"
        return None
    if role in allowed_roles and not success:
        return "refused a page this role may read"
    if role not in allowed_roles and success:
        return "shown a page this role may not read"
    return None


# --- the tests --------------------------------------------------------------------------------
def test_every_url_is_in_the_table(db: None) -> None:
    missing = uncovered_urls()
    assert not missing, (
        "These URLs have no expectation in tests/security/test_permission_matrix.py; add "
        "who may read and write them (a new view is not secure until it is listed):\n  "
        + "\n  ".join(missing)
    )


def test_every_table_entry_is_a_url(db: None) -> None:
    """A renamed or removed view leaves no stale row behind to cover it by mistake."""
    names = {n for n, _ in all_named_urls()}
    stale = [
        key
        for key in [*EXPECTATIONS, *ADMIN_SITE_EXPECTATIONS]
        if key not in names and not (key.endswith(":") and any(n.startswith(key) for n in names))
    ]
    labels = {m._meta.label_lower for m in admin.site._registry}
    stale += [
        key
        for key in ADMIN_EXPECTATIONS
        if key not in labels and not any(label.startswith(f"{key}.") for label in labels)
    ]
    assert not stale, f"remove or rename these expectations: {stale}"


@pytest.mark.parametrize("role", ROLES + ASSIGNMENTS)
def test_role_against_every_url(client: Client, matrix_world: MatrixWorld, role: str) -> None:
    w = matrix_world
    _log_in(client, w, role)
    problems = []
    for probe in probes(w, role):
        for method in ("get", probe.rule.write_method):
            result = _send(client, method, probe.url, probe.post if method != "get" else {})
            if probe.rule.resets_session:
                _log_in(client, w, role)
            problem = _verdict(probe, role, method, result)
            if problem:
                problems.append(
                    f"{method.upper()} {probe.url} ({probe.name}, {probe.kind}): {result[0]} "
                    f"{result[1][:80]} -> {problem}"
                )
    if TIMINGS:
        for spent, method, url in sorted(TIMINGS, reverse=True)[:15]:
            print(f"{spent:.3f}s {method} {url}")
        print("total", sum(t[0] for t in TIMINGS), len(TIMINGS))
    assert not problems, f"{role}: {len(problems)} problems\n" + "\n".join(problems)


def _action_names() -> dict[type, list[str]]:
    """Every action of every model admin, as `get_actions` lists it to a superuser."""
    from types import SimpleNamespace

    superuser = get_user_model()(username="actions", is_superuser=True, is_staff=True)
    request = RequestFactory().get("/admin/")
    request.user = superuser
    # The school-scoped admins ask `request.access` for permissions; a superuser has them all.
    request.access = SimpleNamespace(  # type: ignore[attr-defined]
        has_perm=lambda perm: True, is_district_admin=True, school=None
    )
    return {
        model: sorted(model_admin.get_actions(request))
        for model, model_admin in admin.site._registry.items()
    }


@pytest.mark.parametrize("role", ROLES)
def test_admin_actions(client: Client, matrix_world: MatrixWorld, role: str) -> None:
    """Every admin action of every model, on a row of each school: only the roles that may
    change the model touch its table, and never another school's row (district aside)."""
    w = matrix_world
    _log_in(client, w, role)
    problems = []
    for model, names in _action_names().items():
        label = model._meta.label_lower
        rules = admin_rule(label)
        assert rules is not None, f"add {label} to ADMIN_EXPECTATIONS"
        own = _school_object(model, w.north)
        other = _school_object(model, w.south)
        if own is None and other is None:
            own = _global_object(model)
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for action in names:
            allowed = (
                rules.delete
                if action == "delete_selected"
                else (rules.actions if rules.actions is not None else rules.change)
            )
            for kind, obj in (("own", own), ("other", other)):
                if obj is None:
                    continue
                data = {"action": action, "_selected_action": [obj.pk], "index": 0, "post": "yes"}
                status, location, written = _send(client, "post", url, data)
                may_write = role in allowed and (kind == "own" or role == DISTRICT)
                if status == 500:
                    problems.append(f"{label} {action} ({kind}): server error {location}")
                elif written and not may_write:
                    problems.append(f"{label} {action} ({kind}): wrote {sorted(written)}")
                elif role == AUDITOR and written:
                    problems.append(f"{label} {action}: an auditor changed {sorted(written)}")
    assert not problems, f"{role}:\n" + "\n".join(problems)
