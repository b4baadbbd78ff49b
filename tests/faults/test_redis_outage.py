"""Redis killed under a running gunicorn: pages keep serving the right data, the logged-in
session survives (`cached_db` keeps it in PostgreSQL), writes go through without stalling,
and everything is still fine after Redis comes back empty.

Redis is the cache, the session cache *and* the Celery broker here, as in production; the
attendance write with an absent pupil queues the absence alerts, so it meets the dead
broker too."""

from __future__ import annotations

import pytest

from students.models import AttendanceRecord
from tests.faults.conftest import StaffClient, running_gunicorn
from tests.helpers import child_database_url
from tests.students.factories import PASSWORD

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.xdist_group("faults"),
    pytest.mark.django_db(transaction=True),
]

# Connection refused answers at once; a request that needs longer than this is stuck
# retrying a dead Redis (Celery's result store alone used to retry for 20 s).
OUTAGE_TIMEOUT = 8


def marks(world, status: str) -> dict[str, str]:
    return {f"status_{s.pk}": status for s in world.students}


def assert_pages_serve(staff: StaffClient, world) -> None:
    """Every page answers 200 to the logged-in user (no bounce to the login page) and shows
    this school's real data."""
    pupil = world.students[0]
    pages = {
        "/dashboard/": world.school.name,
        "/students/?q=" + pupil.last_name: pupil.student_number,
        f"/students/{pupil.pk}/": pupil.last_name,
        f"/classes/{world.section.pk}/attendance/": world.students[-1].last_name,
    }
    for path, expected in pages.items():
        answer = staff.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.headers)
        assert expected in answer.text, path


def test_pages_sessions_and_writes_survive_a_redis_crash(world, throwaway_redis, tmp_path, today):
    records = AttendanceRecord.objects.filter(section=world.section, date=today)
    with running_gunicorn(
        tmp_path / "gunicorn.log",
        DATABASE_URL=child_database_url(),
        REDIS_URL=throwaway_redis.url(1),
        CELERY_BROKER_URL=throwaway_redis.url(2),
        CELERY_RESULT_BACKEND=throwaway_redis.url(2),
        CELERY_DEFAULT_QUEUE="faults",
        CACHE_KEY_PREFIX="faults",
    ) as base:
        staff = StaffClient(base, timeout=OUTAGE_TIMEOUT)
        staff.login(world.registrar.username, PASSWORD)
        assert_pages_serve(staff, world)
        # The session and the page caches really live in this Redis before it dies.
        assert any(staff.session_key in key for key in throwaway_redis.keys(1))
        take = f"/classes/{world.section.pk}/attendance/?date={today}"
        assert staff.post(take, marks(world, "present")).status_code == 302

        throwaway_redis.kill()

        # Same browser, same cookie: still logged in, same data, from the database.
        assert_pages_serve(staff, world)
        answer = staff.post(take, marks(world, "absent"))  # queues alerts: broker is down
        assert answer.status_code == 302, answer.text[:2000]
        assert sorted(records.values_list("status", flat=True)) == ["absent"] * len(world.students)
        # A fresh login works too: the new session is written to PostgreSQL.
        teacher = StaffClient(base, timeout=OUTAGE_TIMEOUT)
        teacher.login(world.teacher.username, PASSWORD)
        assert teacher.get(f"/classes/{world.section.pk}/").status_code == 200

        throwaway_redis.start()  # back, empty (no persistence), on the same port

        assert_pages_serve(staff, world)
        assert teacher.get(f"/classes/{world.section.pk}/").status_code == 200
        # Both web workers queue tasks again (each may have met the outage).
        for status in ("late", "absent", "late", "absent"):
            answer = staff.post(take, marks(world, status))
            assert answer.status_code == 302, answer.text[:2000]
        assert throwaway_redis.llen(2, "faults") == 2  # one alert job per absent register
        assert any(staff.session_key in key for key in throwaway_redis.keys(1))

    # Nothing committed was lost: one row per pupil, holding the last write.
    assert sorted(records.values_list("status", flat=True)) == ["absent"] * len(world.students)
