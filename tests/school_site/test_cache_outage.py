"""Redis down must read as cache misses: pages render, logins and sessions keep working."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.helpers import free_port
from tests.students.factories import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def dead_redis(settings):
    port = free_port()  # nothing listens here
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
        }
    }
    settings.CACHES["default"]["OPTIONS"] = {
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
        "IGNORE_EXCEPTIONS": True,
        "SOCKET_CONNECT_TIMEOUT": 0.2,
        "SOCKET_TIMEOUT": 0.2,
    }
    from django.core.cache import cache

    assert cache.set("probe", 1) is None and cache.get("probe") is None  # really unreachable
    return port


def test_pages_render_and_login_works_with_redis_down(client, world, dead_redis, today) -> None:
    assert client.login(username=world.registrar.username, password=PASSWORD)
    for url in [
        reverse("students:dashboard"),
        reverse("students:student_list") + "?q=a",
        reverse("students:student_detail", args=[world.students[0].pk]),
        reverse("students:attendance_take", args=[world.section.pk]),
    ]:
        assert client.get(url).status_code == 200, url
    # a write still goes through (its cache bump is a no-op)
    url = reverse("students:attendance_take", args=[world.section.pk])
    data = {f"status_{s.pk}": "present" for s in world.students}
    assert client.post(f"{url}?date={today}", data).status_code == 302


def test_session_outlives_the_cache(client, world, settings) -> None:
    from django.core.cache import cache

    assert client.login(username=world.registrar.username, password=PASSWORD)
    assert client.get(reverse("students:dashboard")).status_code == 200
    cache.clear()  # Redis restarted empty: the session is still in the database
    assert client.get(reverse("students:dashboard")).status_code == 200
