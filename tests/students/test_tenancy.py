"""Nobody sees another school's rows: every URL of the URLconf, walked with the ids of the
other school's objects, answers 403 or 404 to every role of the first school."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from students.models import StaffMember
from tests.api.objects import api_object_kwargs
from tests.conftest import SchoolWorld

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

# How to point each URL that takes ids at an object of the other school. A new URL with
# arguments fails `test_every_url_with_ids_is_covered` until it is added here.
OBJECT_KWARGS: dict[str, Callable[[SchoolWorld], dict[str, object]]] = {
    "students:student_detail": lambda w: {"pk": w.students[0].pk},
    "students:student_move": lambda w: {"pk": w.students[0].pk},
    "students:transcript": lambda w: {"pk": w.students[0].pk},
    "audit:student_disclosures": lambda w: {"pk": w.students[0].pk},
    "audit:subject_access_export": lambda w: {"pk": w.students[0].pk},
    "reportcards:section": lambda w: {"pk": w.section.pk},
    "reportcards:batch_detail": lambda w: {"pk": report_card_batch(w).pk},
    "reportcards:batch_progress": lambda w: {"pk": report_card_batch(w).pk},
    "students:report_card": lambda w: {"pk": w.students[0].pk, "term_pk": w.term.pk},
    "students:section_detail": lambda w: {"pk": w.section.pk},
    "students:attendance_take": lambda w: {"pk": w.section.pk},
    "students:guardian_contacts": lambda w: {"pk": w.section.pk},
    "students:roster_export": lambda w: {"pk": w.section.pk, "fmt": "csv"},
    "students:grades_enter": lambda w: {"pk": w.assessment.pk},
    # Documents: a real upload for the world's first student (tests/files/factories.py).
    "files:student_document_upload": lambda w: {"pk": w.students[0].pk},
    "files:document_detail": lambda w: {
        "pk": __import__("tests.files.factories", fromlist=["_"]).document_for_world(w).pk
    },
    "files:version_upload": lambda w: {
        "pk": __import__("tests.files.factories", fromlist=["_"]).document_for_world(w).pk
    },
    "files:document_delete": lambda w: {
        "pk": __import__("tests.files.factories", fromlist=["_"]).document_for_world(w).pk
    },
    "files:version_download": lambda w: {
        "pk": __import__("tests.files.factories", fromlist=["_"])
        .document_for_world(w)
        .current_version_id
    },
    "files:version_restore": lambda w: {
        "pk": __import__("tests.files.factories", fromlist=["_"])
        .document_for_world(w)
        .current_version_id
    },
}
# The REST API's URLs that take ids, generated from its router (tests/api/objects.py).
OBJECT_KWARGS.update(api_object_kwargs())


def report_card_batch(w: SchoolWorld) -> object:
    from reportcards.models import ReportCardBatch

    return ReportCardBatch.objects.get_or_create(school=w.school, term=w.term, section=w.section)[0]


# URLs with arguments that are not school objects.
# (backups: a district-wide download behind a signed, expiring token, tested in tests/backups)
NOT_SCHOOL_OBJECTS = {"admin:", "backups:"}


def walk(patterns: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{prefix}{p.namespace}:" if p.namespace else prefix
            yield from walk(p.url_patterns, ns)
        elif isinstance(p, URLPattern) and p.name:
            yield f"{prefix}{p.name}", p


def reversible_urls(world: SchoolWorld, *, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(name, path) of every named URL of the URLconf that takes no arguments, or whose
    arguments OBJECT_KWARGS gives for `world`'s objects; not the debug toolbar's, nor `skip`."""
    skip = set(skip)
    urls = []
    for name, pattern in walk(get_resolver().url_patterns):
        if name in skip or name.startswith("djdt:"):
            continue
        if not pattern.pattern.regex.groups:
            urls.append((name, reverse(name)))
        elif name in OBJECT_KWARGS:
            urls.append((name, reverse(name, kwargs=OBJECT_KWARGS[name](world))))
    return urls


def urls_with_arguments() -> list[str]:
    return sorted(
        {
            name
            for name, p in walk(get_resolver().url_patterns)
            if p.pattern.regex.groups
            and not name.startswith(tuple(NOT_SCHOOL_OBJECTS))
            and not name.startswith("djdt:")
        }
    )


def test_every_url_with_ids_is_covered() -> None:
    missing = set(urls_with_arguments()) - set(OBJECT_KWARGS)
    assert not missing, f"add these URLs to OBJECT_KWARGS: {sorted(missing)}"


ROLES = ["admin", "registrar", "teacher", "auditor"]


@pytest.mark.parametrize("role", ROLES)
def test_other_schools_objects_are_invisible_on_every_url(client, world, other_world, role) -> None:
    client.force_login(getattr(world, role))
    for name in urls_with_arguments():
        url = reverse(name, kwargs=OBJECT_KWARGS[name](other_world))
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (403, 404, 405), (
                f"{role} {method.upper()} {url} ({name}) answered {response.status_code}"
            )
    # …and the same URLs with the user's own school's objects do work for reading.
    client.force_login(world.admin)
    for name in urls_with_arguments():
        response = client.get(reverse(name, kwargs=OBJECT_KWARGS[name](world)))
        assert response.status_code == 200, f"{name} answered {response.status_code}"


def test_teacher_sees_only_their_own_sections_students(client, world) -> None:
    client.force_login(world.teacher)
    listing = client.get(reverse("students:student_list"))
    shown = {s.pk for s in listing.context["page"]}
    assert shown == {s.pk for s in world.students}
    assert world.outsider.pk not in shown
    assert (
        client.get(reverse("students:student_detail", args=[world.outsider.pk])).status_code == 404
    )
    assert (
        client.get(reverse("students:attendance_take", args=[world.other_section.pk])).status_code
        == 404
    )
    # the registrar of the same school sees both classes
    client.force_login(world.registrar)
    assert (
        client.get(reverse("students:student_detail", args=[world.outsider.pk])).status_code == 200
    )


def test_auditor_reads_but_cannot_write(client, world, today) -> None:
    client.force_login(world.auditor)
    assert (
        client.get(reverse("students:student_detail", args=[world.students[0].pk])).status_code
        == 200
    )
    url = reverse("students:attendance_take", args=[world.section.pk])
    assert client.post(url, {}).status_code == 403
    assert (
        client.get(reverse("students:grades_enter", args=[world.assessment.pk])).status_code == 403
    )
    assert client.get(reverse("students:student_import")).status_code == 403


def test_user_without_a_school_is_refused(client, db) -> None:
    from tests.students.factories import UserFactory

    client.force_login(UserFactory(username="nobody"))
    assert client.get(reverse("students:dashboard")).status_code == 403


def test_anonymous_users_are_sent_to_login(client, world) -> None:
    response = client.get(reverse("students:student_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_switching_school_is_only_for_schools_of_the_user(
    client, world, other_world, district_user
) -> None:
    client.force_login(world.admin)
    response = client.post(reverse("students:switch_school"), {"school": other_world.school.pk})
    assert response.status_code == 403
    client.force_login(district_user)
    client.post(reverse("students:switch_school"), {"school": other_world.school.pk})
    page = client.get(reverse("students:dashboard"))
    assert page.context["figures"].school_name == other_world.school.name
    assert (
        client.get(
            reverse("students:student_detail", args=[other_world.students[0].pk])
        ).status_code
        == 200
    )


# --- the admin console ------------------------------------------------------------------------
SCHOOL_MODELS = [m for m in admin.site._registry if m._meta.app_label == "students"]


def make_history_rows(w: SchoolWorld) -> None:
    """Rows of the models that only services write (rollover, moves, alerts)."""
    import datetime

    from students.models import (
        AbsenceAlert,
        AbsenceAlertSettings,
        GradeLevelChange,
        StudentMove,
    )

    pupil = w.students[0]
    guardian = pupil.guardian_links.first().guardian
    day = datetime.date(2026, 9, 1)
    GradeLevelChange.objects.create(
        school=w.school,
        student=pupil,
        from_level=w.level,
        to_level=w.level,
        changed_on=day,
        reason="mid_year",
    )
    StudentMove.objects.create(
        school=w.school,
        student=w.outsider,
        kind="withdrawal",
        reason_code="moved",
        effective_on=day,
    )
    AbsenceAlert.objects.get_or_create(
        school=w.school, student=pupil, guardian=guardian, date=day, email="g@example.net"
    )
    AbsenceAlertSettings.objects.get_or_create(school=w.school)


def other_school_object(model: type, w: SchoolWorld) -> object:
    from students.models import School

    if model is School:
        return w.school
    obj = model._default_manager.filter(school=w.school).first()
    assert obj is not None, f"the test world has no {model.__name__}"
    return obj


@pytest.mark.parametrize("model", SCHOOL_MODELS, ids=lambda m: m.__name__)
def test_admin_is_scoped_to_the_school(client, world, other_world, model) -> None:
    from students.models import AttendanceRecord, Grade

    if model in (AttendanceRecord, Grade):  # the fixture world has none yet
        from tests.students.factories import AttendanceRecordFactory, GradeFactory

        for w in (world, other_world):
            AttendanceRecordFactory(school=w.school, section=w.section, student=w.students[0])
            GradeFactory(school=w.school, assessment=w.assessment, student=w.students[0])
    for w in (world, other_world):
        make_history_rows(w)
    client.force_login(world.admin)
    opts = model._meta
    theirs = other_school_object(model, other_world)
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[theirs.pk])
    response = client.get(change)
    # Django's admin answers a missing object with a redirect to the index and a message.
    assert response.status_code in (302, 403, 404), f"{change} answered {response.status_code}"
    listing = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    if listing.status_code == 200:
        shown = {obj.pk for obj in listing.context["cl"].result_list}
        assert theirs.pk not in shown or model.__name__ == "School"
        if model.__name__ == "School":
            assert shown == {world.school.pk}


def test_school_admin_console_foreign_key_choices_are_scoped(client, world, other_world) -> None:
    client.force_login(world.admin)
    page = client.get(reverse("admin:students_enrollment_add"))
    assert page.status_code == 200
    sections = page.context["adminform"].form.fields["section"].queryset
    assert set(sections) == {world.section, world.other_section}


def test_teacher_has_no_admin_console(client, world) -> None:
    client.force_login(world.teacher)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302  # to the admin login: teachers are not staff


def test_staff_roles_are_groups_with_permissions(db) -> None:
    from django.contrib.auth.models import Group

    from students.tenancy import ROLE_GROUPS

    for role, group_name in ROLE_GROUPS.items():
        perms = set(
            Group.objects.get(name=group_name).permissions.values_list("codename", flat=True)
        )
        assert "view_student" in perms, role
        if role == StaffMember.Role.AUDITOR:
            assert not {p for p in perms if not p.startswith("view_")}, "auditors only read"
        if role == StaffMember.Role.TEACHER:
            assert "add_attendancerecord" in perms and "add_student" not in perms
