"""Shared fixtures: a small school with a class, its staff in every role, and a second school
that nobody in the first may see."""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.test import Client

from students.models import StaffMember
from tests.emulators import gcs_endpoint, moto_endpoint  # noqa: F401  (shared fixtures)
from tests.helpers import free_port
from tests.students.factories import (
    AcademicYearFactory,
    AssessmentFactory,
    EnrollmentFactory,
    GradeLevelFactory,
    SchoolFactory,
    SectionFactory,
    SectionTeacherFactory,
    StaffMemberFactory,
    StudentGuardianFactory,
    SubjectFactory,
    TermFactory,
    district_admin,
)

# Each xdist worker gets its own Redis database for the cache: the test databases of two
# workers reuse the same primary keys, and `cache.clear()` flushes a whole Redis database.
# Counted from REDIS_URL's database (1 by default: 9, 10, ...), so runs given other ones apart.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
if settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache":
    base, _, number = settings.CACHES["default"]["LOCATION"].rpartition("/")
    settings.CACHES["default"]["LOCATION"] = f"{base}/{(int(number or 0) + 8 + XDIST_WORKER) % 16}"


# --- the two database roles ------------------------------------------------------------------
# The test database is created and migrated by the maintenance role, as in production, and
# the tests then connect as the application's role, which row-level security binds. Outside
# requests (factories, services called directly) the tests act for every school; a request
# acts for its own (the tenancy middleware), so every page test also tests the second wall.
_APP_CREDENTIALS: dict[str, object] = {}


def _use_credentials(credentials: dict[str, object]) -> None:
    from django.db import connections

    connection = connections["default"]
    connection.close()
    if hasattr(connection, "close_pool"):  # a pool keeps the credentials it was opened with
        connection.close_pool()
    connection.settings_dict.update(credentials)


def _maintenance_credentials() -> dict[str, object]:
    return {k: settings.DATABASE_MAINTENANCE[k] for k in ("USER", "PASSWORD", "HOST", "PORT")}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    from django.db import connections

    db = connections["default"].settings_dict
    if settings.USING_POSTGRES:
        _APP_CREDENTIALS.update({k: db[k] for k in ("USER", "PASSWORD", "HOST", "PORT")})
        db.update(_maintenance_credentials())


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker) -> Iterator[None]:
    one_role = _APP_CREDENTIALS.get("USER") == settings.DATABASE_MAINTENANCE["USER"]
    if not settings.USING_POSTGRES or one_role:
        yield
        return
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        # Test-only: transactional tests empty the tables between tests with TRUNCATE.
        app_role = connection.ops.quote_name(str(_APP_CREDENTIALS["USER"]))
        cursor.execute(f"GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO {app_role}")
    _use_credentials(_APP_CREDENTIALS)
    yield
    _use_credentials(_maintenance_credentials())  # the maintenance role drops what it made


@pytest.fixture(scope="session", autouse=True)
def _tests_act_for_every_school() -> Iterator[None]:
    from students.row_security import EVERY_SCHOOL, acting_for

    with acting_for(EVERY_SCHOOL):
        yield


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "real_two_factor: test clients log in without an automatic second factor"
    )


@dataclass
class SchoolWorld:
    school: object
    year: object
    term: object
    level: object
    section: object
    other_section: object
    subject: object
    students: list
    outsider: object  # enrolled in other_section, not taught by `teacher`
    assessment: object
    admin: object
    registrar: object
    teacher: object
    auditor: object


def build_school(prefix: str, students: int = 3) -> SchoolWorld:
    school = SchoolFactory(name=f"{prefix} School", code=prefix.lower())
    year = AcademicYearFactory(school=school)
    term = TermFactory(school=school, academic_year=year, name="Term 1")
    level = GradeLevelFactory(school=school, name="Grade 7", order=7)
    section = SectionFactory(school=school, academic_year=year, grade_level=level, name="7A")
    other = SectionFactory(school=school, academic_year=year, grade_level=level, name="7B")
    subject = SubjectFactory(school=school, code="MATH", name="Mathematics")
    pupils = [
        EnrollmentFactory(
            school=school,
            section=section,
            academic_year=year,
            student__student_number=f"{prefix.upper()}-{n:03d}",
            student__grade_level=level,
        ).student
        for n in range(1, students + 1)
    ]
    for pupil in pupils:
        StudentGuardianFactory(school=school, student=pupil)
    outsider = EnrollmentFactory(
        school=school,
        section=other,
        academic_year=year,
        student__student_number=f"{prefix.upper()}-900",
        student__grade_level=level,
    ).student
    assessment = AssessmentFactory(
        school=school, section=section, subject=subject, term=term, name="Fractions quiz"
    )

    def member(role: str) -> object:
        return StaffMemberFactory(
            school=school, role=role, user__username=f"{role}-{prefix.lower()}"
        ).user

    teacher_link = SectionTeacherFactory(
        school=school,
        section=section,
        staff__user__username=f"teacher-{prefix.lower()}",
    )
    return SchoolWorld(
        school=school,
        year=year,
        term=term,
        level=level,
        section=section,
        other_section=other,
        subject=subject,
        students=pupils,
        outsider=outsider,
        assessment=assessment,
        admin=member(StaffMember.Role.SCHOOL_ADMIN),
        registrar=member(StaffMember.Role.REGISTRAR),
        teacher=teacher_link.staff.user,
        auditor=member(StaffMember.Role.AUDITOR),
    )


@pytest.fixture
def world(db: None) -> SchoolWorld:
    return build_school("North")


@pytest.fixture
def other_world(db: None) -> SchoolWorld:
    return build_school("South")


@pytest.fixture
def district_user(db: None) -> object:
    return district_admin()


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _same_fake_names(request) -> None:
    """Faker's names differ per run unless seeded; a test that sees a surprising name
    collision then fails every time, not one run in fifty."""
    import factory.random

    factory.random.reseed_random(request.node.nodeid)


@pytest.fixture
def today() -> datetime.date:
    from django.utils import timezone

    return timezone.localdate()


def _otp_verify_client(client: Client, user: object) -> None:
    """Give an administrator a confirmed authenticator and mark the client's session as
    verified by it, exactly as a real code would (accounts.services.session_mark_verified)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.policy import two_factor_required
    from accounts.services import session_mark_verified_raw

    if not two_factor_required(user):
        return
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)
    session = client.session
    session_mark_verified_raw(session=session, device=device)
    session.save()


@pytest.fixture(autouse=True)
def _test_client_logins(request, monkeypatch) -> None:
    """Keep `client.force_login(admin)` meaning "an administrator at work" now that
    administrators need a second factor: the session is OTP-verified as after a real code.
    Tests of the two-factor flow itself opt out with `@pytest.mark.real_two_factor`.

    `client.login(...)` also gets a request to pass to authenticate(): django-axes (the
    lockout) refuses to judge a log-in with no client address."""
    real_login, real_force_login = Client.login, Client.force_login
    auto_otp = request.node.get_closest_marker("real_two_factor") is None

    def login(self: Client, **credentials: object) -> bool:
        if "request" not in credentials:
            fake = HttpRequest()
            fake.META["REMOTE_ADDR"] = "127.0.0.1"
            credentials["request"] = fake
        ok = real_login(self, **credentials)
        if ok and auto_otp:
            from django.contrib.auth import SESSION_KEY, get_user_model

            _otp_verify_client(self, get_user_model().objects.get(pk=self.session[SESSION_KEY]))
        return ok

    def force_login(self: Client, user: object, backend: str | None = None) -> None:
        real_force_login(self, user, backend)
        if auto_otp:
            _otp_verify_client(self, user)

    monkeypatch.setattr(Client, "login", login)
    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture(autouse=True)
def _celery_app_stays_current():
    """A test that builds its own Celery app must pass set_as_current=False: a stray current
    app sends every later shared_task call in this process to that test's broker."""
    from celery import current_app

    from school_site.celery import app

    yield
    stray = current_app._get_current_object()
    if stray is not app:
        app.set_current()
        pytest.fail(f"this test left Celery app {stray.main!r} current; use set_as_current=False")


@pytest.fixture
def live_celery():
    """Send tasks to the real broker instead of running them in-process (unit tests' default)."""
    from school_site.celery import app

    app.conf.task_always_eager = False
    yield app
    app.conf.task_always_eager = True


@pytest.fixture
def throwaway_redis(tmp_path) -> Iterator[str]:
    """A Redis server of this test's own on a free port, without persistence; stopped (by its
    process id) afterwards. The shared Redis on 6379 is never touched."""
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        client.close()
        yield url
    finally:  # also when it never answered: no redis-server outlives its test
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def cache_commands(settings, throwaway_redis) -> Callable[[], dict[str, int]]:
    """Django's cache on a Redis server of this test's own (the shared one serves other
    workers), and a counter of the commands it has received: each call answers the counts
    since the previous call, by command (`{"mget": 1}`)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": throwaway_redis,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
    server = redis.Redis.from_url(throwaway_redis)

    def since_last() -> dict[str, int]:
        stats = server.info("commandstats")
        server.config_resetstat()
        return {
            name.removeprefix("cmdstat_"): value["calls"]
            for name, value in stats.items()
            if name not in {"cmdstat_info", "cmdstat_config|resetstat"}
        }

    return since_last
