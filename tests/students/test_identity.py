"""The cached identity (students.identity): a page pays one query to know who is asking, and
every change to a user's schools, roles or permissions reaches their very next request.

Transactional tests: the identity cache is bypassed inside a transaction that changed
identity rows, and an ordinary test runs entirely inside one."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from students.identity import identity_invalidate
from students.models import StaffMember
from students.tenancy import DISTRICT_ADMIN_GROUP, resolve_access
from tests.conftest import build_school

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def school():
    return build_school("Identity")


def _fresh(user):
    """The user as the next request loads it (facts are looked up once per user object, as
    Django's own permission cache is)."""
    return type(user).objects.get(pk=user.pk)


def _queries(client, url: str) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    return response.status_code, [q["sql"] for q in ctx.captured_queries]


def test_a_cached_dashboard_costs_no_query(client, school) -> None:
    """The session's user row comes from the identity cache with the user's other facts."""
    client.force_login(school.teacher)
    url = reverse("students:dashboard")
    client.get(url)  # fills the figures and the identity
    status, queries = _queries(client, url)
    assert status == 200
    assert queries == []


def test_every_role_pays_no_query_on_a_cached_page(client, school, district_user):
    for user in (school.admin, school.registrar, school.teacher, school.auditor, district_user):
        client.force_login(user)
        client.get(reverse("students:dashboard"))
        status, queries = _queries(client, reverse("students:dashboard"))
        assert status == 200
        assert [q for q in queries if "otp_" not in q] == [], (user, queries)


def _signed_in(client, user) -> bool:
    response = client.get(reverse("students:dashboard"))
    return response.status_code == 200 and response.wsgi_request.user.pk == user.pk


def test_the_cached_session_user_follows_every_save_of_the_user(client, school) -> None:
    """A deactivated account, a new password (from anywhere: another process, the admin) and
    a new name reach the very next request; the cache never holds a user object's extras."""
    from django.core.cache import cache

    from students.identity import _user_facts_key

    user = school.registrar
    client.force_login(user)
    assert _signed_in(client, user)
    _versions, facts = cache.get(_user_facts_key(user.pk))
    assert isinstance(facts["user-row"], list)  # column values: no permission or OTP caches
    elsewhere = _fresh(user)
    elsewhere.first_name = "Renamed"
    elsewhere.save()
    assert client.get(reverse("students:dashboard")).wsgi_request.user.first_name == "Renamed"
    elsewhere.is_active = False
    elsewhere.save()
    assert not _signed_in(client, user)
    elsewhere.is_active = True
    elsewhere.save()
    client.force_login(user)
    assert _signed_in(client, user)
    elsewhere = _fresh(user)
    elsewhere.set_password("a brand new passphrase, long enough")
    elsewhere.save()
    assert not _signed_in(client, user)  # the session's hash no longer matches


def test_a_deleted_user_is_signed_out(client, school) -> None:
    user = school.auditor
    client.force_login(user)
    assert _signed_in(client, user)
    user.delete()
    response = client.get(reverse("students:dashboard"))
    assert not response.wsgi_request.user.is_authenticated


def test_a_deactivated_membership_loses_access_on_the_next_request(client, school) -> None:
    client.force_login(school.teacher)
    assert client.get(reverse("students:dashboard")).status_code == 200
    member = StaffMember.objects.get(user=school.teacher)
    member.is_active = False
    member.save()
    assert client.get(reverse("students:dashboard")).status_code == 403


def test_a_deactivated_school_disappears_for_its_staff(client, school) -> None:
    client.force_login(school.registrar)
    assert client.get(reverse("students:student_list")).status_code == 200
    school.school.is_active = False
    school.school.save()
    assert client.get(reverse("students:student_list")).status_code == 403


def test_a_changed_role_takes_effect_on_the_next_request(client, school) -> None:
    client.force_login(school.registrar)
    import_url = reverse("students:student_import")
    assert client.get(import_url).status_code == 200
    member = StaffMember.objects.get(user=school.registrar)
    member.role = StaffMember.Role.TEACHER
    member.save()
    assert client.get(import_url).status_code == 403


def test_permission_removed_from_a_role_group_is_gone_on_the_next_request(client, school) -> None:
    client.force_login(school.auditor)
    trail = reverse("audit:trail")
    assert client.get(trail).status_code == 200
    assert b'href="/audit/"' in client.get(reverse("students:dashboard")).content
    group = Group.objects.get(name="Auditor")
    view_events = Permission.objects.get(codename="view_auditevent")
    group.permissions.remove(view_events)
    try:
        assert client.get(trail).status_code == 403
        # The navigation's `perms` (ModelBackend, cached) lost the link too.
        assert b'href="/audit/"' not in client.get(reverse("students:dashboard")).content
    finally:
        group.permissions.add(view_events)
    assert client.get(trail).status_code == 200


def test_leaving_a_group_removes_its_permissions_from_the_navigation(client, school) -> None:
    client.force_login(school.auditor)
    assert b'href="/audit/"' in client.get(reverse("students:dashboard")).content
    school.auditor.groups.clear()
    assert b'href="/audit/"' not in client.get(reverse("students:dashboard")).content


def test_joining_the_district_group_makes_a_district_admin(client, school, other_world) -> None:
    user = school.registrar
    before = resolve_access(user, other_world.school.pk)
    assert before.school == school.school and not before.is_district_admin
    Group.objects.get(name=DISTRICT_ADMIN_GROUP).user_set.add(user)
    after = resolve_access(_fresh(user), other_world.school.pk)
    assert after.is_district_admin and after.school == other_world.school


def test_a_rolled_back_change_leaves_no_trace_in_the_cache(school) -> None:
    user = school.teacher
    assert resolve_access(user, None).role == StaffMember.Role.TEACHER
    with pytest.raises(RuntimeError), transaction.atomic():
        StaffMember.objects.filter(user=user).update(role=StaffMember.Role.SCHOOL_ADMIN)
        identity_invalidate({user.pk})
        # Inside the transaction the change shows at once...
        assert resolve_access(_fresh(user), None).role == StaffMember.Role.SCHOOL_ADMIN
        raise RuntimeError("roll back")
    # ...and after the rollback the cache holds nothing of it.
    assert resolve_access(_fresh(user), None).role == StaffMember.Role.TEACHER


def test_identity_is_served_from_the_cache_without_queries(school) -> None:
    user = school.teacher
    resolve_access(user, None).permissions  # noqa: B018 - fills the role's permissions
    with CaptureQueriesContext(connection) as ctx:
        access = resolve_access(user, None)
        assert access.has_perm("students.add_attendancerecord")
        assert not access.has_perm("students.delete_student")
        assert user.has_perm("students.view_student") and not user.has_perm("audit.view_auditevent")
    assert len(ctx.captured_queries) == 2  # ModelBackend's two, the first time for this user
    user = _fresh(user)  # a new request's user object
    with CaptureQueriesContext(connection) as ctx:
        resolve_access(user, None).has_perm("students.add_attendancerecord")
        assert user.has_perm("students.view_student")
    assert ctx.captured_queries == []


def test_identity_costs_one_cache_round_trip_per_request(school, cache_commands):
    """Counted by a Redis server of the test's own (the shared one serves other workers)."""
    user = school.teacher
    resolve_access(user, None).has_perm("students.view_student")
    user.has_perm("students.view_student")
    user = _fresh(user)  # a new request's user object
    cache_commands()
    access = resolve_access(user, None)
    assert access.has_perm("students.view_student") and user.has_perm("students.view_student")
    assert cache_commands() == {"mget": 1}
    # A request's user read by the session backend brings the same round trip with it.
    from accounts.backends import CachedModelBackend

    CachedModelBackend().get_user(user.pk)  # fills the row
    cache_commands()
    user = CachedModelBackend().get_user(user.pk)
    access = resolve_access(user, None)
    assert access.has_perm("students.view_student") and user.has_perm("students.view_student")
    assert cache_commands() == {"mget": 1}


def test_migrate_moves_everybody_on(school) -> None:
    """`migrate` writes permissions and role groups without signals (historical models,
    bulk_create): it must still invalidate every cached identity."""
    from django.core.management.sql import emit_post_migrate_signal

    from students.cache import cache_version
    from students.identity import _EVERYONE

    before = cache_version(_EVERYONE)
    emit_post_migrate_signal(0, False, "default")
    assert cache_version(_EVERYONE) > before


def test_sessions_signed_in_before_the_cached_backend_still_load(client, school) -> None:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = client.session
    session[SESSION_KEY] = str(school.registrar.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = school.registrar.get_session_auth_hash()
    session.save()
    client.cookies["sessionid"] = session.session_key
    response = client.get(reverse("students:student_list"))
    assert response.status_code == 200
    assert response.wsgi_request.user == school.registrar


def test_a_wrong_password_is_refused_once_and_counted(client, school) -> None:
    from axes.models import AccessAttempt

    school.registrar.set_password("the right one, long enough")
    school.registrar.save()
    page = client.post(
        reverse("login"), {"username": school.registrar.username, "password": "wrong guess"}
    )
    assert page.status_code == 200 and not page.wsgi_request.user.is_authenticated
    assert AccessAttempt.objects.get(username=school.registrar.username).failures_since_start == 1
    assert client.login(username=school.registrar.username, password="the right one, long enough")
