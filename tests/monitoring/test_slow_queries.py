"""Slow-query capture with real slow statements (`pg_sleep`) on the real PostgreSQL."""

from __future__ import annotations

import datetime

import pytest
from celery import shared_task
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from monitoring.models import Heartbeat, SlowQuery
from monitoring.selectors import percentile, slow_query_summary_get
from monitoring.services import monitoring_prune
from monitoring.slow_queries import (
    QUERY_TIMER,
    fingerprint,
    install,
    normalize_sql,
    records_write,
)
from tests.monitoring.conftest import BOTH_DATABASES

pytestmark = pytest.mark.unit


def forget_the_last_flush() -> None:
    """The test runner's flush after the previous transactional test (a TRUNCATE of every
    table) can itself take longer than the threshold on a loaded machine; it is recorded
    after the flush, so its row would count here."""
    SlowQuery.objects.all().delete()


SLEEP = "SELECT pg_sleep(?)"


@shared_task(name="tests.monitoring.slow_task")
def slow_task() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [0.2])
    return "done"


# --- normalisation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            'SELECT "t"."id" FROM "students_student" "t" WHERE "t"."id" = %s LIMIT 21',
            'SELECT "t"."id" FROM "students_student" "t" WHERE "t"."id" = ? LIMIT ?',
        ),
        (
            "SELECT * FROM x WHERE name = 'O''Brien' AND born > '2010-01-01' AND n = 4.5",
            "SELECT * FROM x WHERE name = ? AND born > ? AND n = ?",
        ),
        (
            'SELECT * FROM "a" WHERE "a"."id" IN (%s, %s, %s)',
            'SELECT * FROM "a" WHERE "a"."id" IN (...)',
        ),
        ("SELECT * FROM a WHERE id IN (1,2,3,4,5,6)", "SELECT * FROM a WHERE id IN (...)"),
        (
            'INSERT INTO "t" ("a", "b") VALUES (%s, %s), (%s, %s), (%s, %s)',
            'INSERT INTO "t" ("a", "b") VALUES (...)',
        ),
        (
            "SELECT U0.col1, t2.x FROM t2 JOIN U0 ON U0.a3 = t2.b4",
            "SELECT U0.col1, t2.x FROM t2 JOIN U0 ON U0.a3 = t2.b4",
        ),
        ("SELECT  1\n  FROM\tdual", "SELECT ? FROM dual"),
        (
            "SELECT * FROM a WHERE id = ANY(ARRAY[1, 2, 3])",
            "SELECT * FROM a WHERE id = ANY(ARRAY[...])",
        ),
        ("SELECT $1::text, x::int FROM t", "SELECT ?::text, x::int FROM t"),
    ],
)
def test_normalize_strips_literals_and_collapses_lists(sql, expected) -> None:
    assert normalize_sql(sql) == expected


def test_same_query_with_other_values_shares_a_fingerprint() -> None:
    a = normalize_sql("SELECT * FROM t WHERE id IN (%s, %s) AND name = 'x'")
    b = normalize_sql("SELECT * FROM t WHERE id IN (%s, %s, %s, %s) AND name = 'yy'")
    c = normalize_sql("SELECT * FROM t WHERE code IN (%s) AND name = 'x'")
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert len(fingerprint(a)) == 16


def test_our_wrapper_survives_djangos_execute_wrapper_block(db) -> None:
    install(connection)
    assert connection.execute_wrappers[0] is QUERY_TIMER

    def other(execute, sql, params, many, context):
        return execute(sql, params, many, context)

    with connection.execute_wrapper(other):
        install(connection)  # e.g. the pool handed out a connection inside the block
    assert connection.execute_wrappers.count(QUERY_TIMER) == 1
    assert other not in connection.execute_wrappers


# --- capture ---------------------------------------------------------------------------------
@pytest.mark.urls("tests.monitoring.urls")
@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_slow_query_of_a_rolled_back_request_is_recorded(client, settings) -> None:
    settings.MONITORING_SLOW_QUERY_MS = 100
    response = client.get(reverse("slow-rolled-back"))
    assert response.status_code == 200
    assert not Heartbeat.objects.filter(name="rolled-back").exists()  # the work rolled back
    record = SlowQuery.objects.get(fingerprint=fingerprint(SLEEP))  # the record did not
    assert record.statement == SLEEP
    assert record.route == "slow-rolled-back"
    assert record.duration_ms >= 200
    assert record.database == "default"
    assert record.stack.splitlines()[0].startswith("tests/monitoring/urls.py:")
    assert "in slow_then_rolled_back" in record.stack
    assert "site-packages" not in record.stack and "django/" not in record.stack


@pytest.mark.urls("tests.monitoring.urls")
@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_fast_queries_leave_nothing(client, settings) -> None:
    forget_the_last_flush()
    settings.MONITORING_SLOW_QUERY_MS = 1000
    assert client.get(reverse("fast")).status_code == 200
    assert not SlowQuery.objects.exists()


@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_recording_never_records_its_own_writes(settings) -> None:
    forget_the_last_flush()
    settings.MONITORING_SLOW_QUERY_MS = 0.000001  # every statement is "slow"
    with CaptureQueriesContext(connection) as ran:
        Heartbeat.objects.create(name="x", last_seen=timezone.now())
        list(Heartbeat.objects.filter(name__in=["x", "y", "z"]))
    recorded = list(SlowQuery.objects.values_list("database", "statement"))
    assert len(recorded) == len(ran.captured_queries)  # one per statement, nothing more
    assert {db for db, _ in recorded} == {"default"}
    assert not [s for _, s in recorded if "monitoring_slowquery" in s]
    assert any("IN (...)" in s for _, s in recorded)
    # outside a request or task the route names the process (here pytest)
    assert all(SlowQuery.objects.values_list("route", flat=True))


@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_a_slow_statement_in_a_transaction_holding_our_table_does_not_hang(settings) -> None:
    """A migration or `flush` holds locks on our table; writing the record from the other
    connection at once would wait for them forever. It is written after the commit."""
    settings.MONITORING_SLOW_QUERY_MS = 100
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE monitoring_slowquery IN ACCESS EXCLUSIVE MODE")
        cursor.execute("SELECT pg_sleep(%s)", [0.15])
        assert not SlowQuery.objects.exists()  # not yet
    assert SlowQuery.objects.get().statement == SLEEP


@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_a_monitoring_write_gives_up_on_a_lock_instead_of_waiting(settings) -> None:
    # Recording off: on a loaded machine the LOCK or the wait itself can pass the 500 ms
    # threshold, and its own record would land after the lock is released.
    settings.MONITORING_SLOW_QUERY_MS = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE monitoring_slowquery IN ACCESS EXCLUSIVE MODE")
        records_write(
            [
                {
                    "recorded_at": timezone.now(),
                    "fingerprint": "0" * 16,
                    "statement": "SELECT ?",
                    "duration_ms": 1.0,
                }
            ]
        )  # returns (after lock_timeout) instead of hanging; the record is dropped
    assert not SlowQuery.objects.exists()


@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_a_celery_tasks_slow_query_carries_the_task_name(settings) -> None:
    settings.MONITORING_SLOW_QUERY_MS = 100
    assert slow_task.delay().get(timeout=10) == "done"  # eager in unit tests
    record = SlowQuery.objects.get(fingerprint=fingerprint(SLEEP))
    assert record.route == "task:tests.monitoring.slow_task"
    assert "in slow_task" in record.stack


@pytest.mark.django_db(transaction=True, databases=BOTH_DATABASES)
def test_sampling_keeps_a_fraction_but_counts_all(settings) -> None:
    forget_the_last_flush()
    settings.MONITORING_SLOW_QUERY_MS = 100
    settings.MONITORING_SLOW_QUERY_SAMPLE_RATE = 0.0
    before = REGISTRY.get_sample_value("schoolhouse_db_slow_queries_total", {"route": "none"}) or 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [0.15])
    assert not SlowQuery.objects.exists()
    after = REGISTRY.get_sample_value("schoolhouse_db_slow_queries_total", {"route": "none"})
    assert after == before + 1


# --- summary, admin, pruning -----------------------------------------------------------------
def _rows(fp: str, statement: str, durations: list[float], route: str = "students:x") -> None:
    now = timezone.now()
    SlowQuery.objects.bulk_create(
        SlowQuery(
            recorded_at=now - datetime.timedelta(seconds=i),
            fingerprint=fp,
            statement=statement,
            duration_ms=d,
            route=route,
        )
        for i, d in enumerate(durations)
    )


@pytest.mark.django_db
def test_summary_aggregates_count_p50_p95_max_per_fingerprint() -> None:
    _rows("aaaaaaaaaaaaaaaa", "SELECT a", [float(d) for d in range(1, 101)])
    _rows("bbbbbbbbbbbbbbbb", "SELECT b", [700.0, 900.0], route="task:t")
    summary = {s.fingerprint: s for s in slow_query_summary_get()}
    a = summary["aaaaaaaaaaaaaaaa"]
    assert (a.count, a.max_ms, a.statement, a.routes) == (100, 100.0, "SELECT a", ["students:x"])
    assert a.p50_ms == pytest.approx(50.5)
    assert a.p95_ms == pytest.approx(95.05)
    b = summary["bbbbbbbbbbbbbbbb"]
    assert (b.count, b.p50_ms, b.max_ms) == (2, pytest.approx(800.0), 900.0)
    # the Python fallback (SQLite) agrees with PostgreSQL's percentile_cont
    assert percentile([float(d) for d in range(1, 101)], 0.95) == pytest.approx(95.05)
    # "slowest first" puts b on top
    assert slow_query_summary_get(order="max")[0].fingerprint == "bbbbbbbbbbbbbbbb"


@pytest.mark.django_db
def test_admin_summary_page_is_for_district_admins(client, district_user, world) -> None:
    _rows("aaaaaaaaaaaaaaaa", "SELECT a", [10.0, 20.0, 30.0])
    url = reverse("admin:monitoring_slowqueryfingerprint_changelist")
    client.force_login(district_user)
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-fingerprint="aaaaaaaaaaaaaaaa"' in html
    assert '<td class="count">3</td>' in html
    assert '<td class="p50">20.0</td>' in html and '<td class="max">30.0</td>' in html
    rows = client.get(
        reverse("admin:monitoring_slowquery_changelist") + "?fingerprint__exact=aaaaaaaaaaaaaaaa"
    )
    assert rows.status_code == 200 and rows.context["cl"].result_count == 3
    client.force_login(world.admin)  # a school administrator: staff, but not monitoring
    assert client.get(url).status_code == 403


@pytest.mark.django_db
def test_prune_keeps_tables_bounded(settings) -> None:
    old = timezone.now() - datetime.timedelta(days=30)
    _rows("cccccccccccccccc", "SELECT c", [1.0] * 5)
    SlowQuery.objects.filter(
        id__in=list(SlowQuery.objects.values_list("id", flat=True)[:2])
    ).update(recorded_at=old)
    assert monitoring_prune()["slow_queries"] == 2
    settings.MONITORING_SLOW_QUERY_MAX_ROWS = 1
    _rows("dddddddddddddddd", "SELECT d", [2.0])
    monitoring_prune()
    assert list(SlowQuery.objects.values_list("fingerprint", flat=True)) == ["dddddddddddddddd"]


def test_monitoring_alias_is_its_own_connection_to_the_same_database(settings) -> None:
    assert connections["monitoring"] is not connections["default"]
    assert settings.DATABASES["monitoring"]["TEST"]["MIRROR"] == "default"
    assert "pool" not in settings.DATABASES["monitoring"].get("OPTIONS", {})
