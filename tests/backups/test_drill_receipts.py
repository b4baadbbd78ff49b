"""The restore drill's records, without a cluster: what pgbackrest verify's report is taken
to mean, the receipts' health on the dashboard, the admin, the alert of a drill that cannot
even start, the marks' pruning and the beat jobs. (The drill itself, end to end:
test_pitr_drill.py.)"""

from __future__ import annotations

import datetime
import importlib

import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from backups.models import DrillMark, DrillReceipt, RestorePoint
from backups.selectors import drill_receipts_newest, pitr_drill_health
from backups.services.drill import _verify_problems
from tests.students.factories import SchoolFactory, district_admin

VERIFY_OK = """\
2026-12-02 11:02:01.432 P00 DETAIL: archiveId: 15-1, wal start: 000000010000000000000001, wal stop: 000000010000000000000044
2026-12-02 11:02:01.432 P00   INFO: stanza: schoolhouse
                                    status: ok
                                      archiveId: 15-1, total WAL checked: 68, total valid WAL: 68
stanza: schoolhouse
status: ok
  archiveId: 15-1, total WAL checked: 68, total valid WAL: 68
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261202-105409F, status: valid, total files checked: 1701, total valid files: 1701
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
2026-12-02 11:02:01.432 P00   INFO: verify command end: completed successfully (2540ms)
"""  # noqa: E501 - pgBackRest's own lines, as it prints them


def test_a_clean_verify_report_is_no_problem() -> None:
    assert _verify_problems(VERIFY_OK) == []


def test_a_checksum_failure_names_the_segment() -> None:
    out = (
        VERIFY_OK.replace("status: ok", "status: error")
        .replace("total valid WAL: 68", "total valid WAL: 67")
        .replace("missing: 0, checksum invalid: 0", "missing: 0, checksum invalid: 1", 1)
    )
    out = (
        "2026-12-02 11:00:56.621 P02   INFO: invalid checksum "
        "'15-1/0000000100000000/000000010000000000000040-8276a2eb.zst'\n" + out
    )
    problems = _verify_problems(out)
    assert problems[0] == (
        "pgbackrest verify: status: error; missing: 0, checksum invalid: 1, size invalid: 0, "
        "other: 0"
    )
    assert "000000010000000000000040" in problems[1]


def test_a_gap_in_one_timeline_is_missing_wal_and_a_new_timeline_is_not() -> None:
    ranges = (
        "2026-12-02 11:01:12.375 P00 DETAIL: archiveId: 15-1, wal start: "
        "000000010000000000000001, wal stop: 000000010000000000000039\n"
        "2026-12-02 11:01:12.375 P00 DETAIL: archiveId: 15-1, wal start: "
        "00000001000000000000003B, wal stop: 000000010000000000000043\n"
        "2026-12-02 11:01:12.375 P00 DETAIL: archiveId: 15-1, wal start: "
        "000000020000000000000043, wal stop: 000000020000000000000050\n"
    )
    out = ranges + VERIFY_OK.split("\n", 1)[1]  # pgBackRest says "ok" for a gap
    assert _verify_problems(out) == [
        "WAL missing in 15-1 between 000000010000000000000039 and 00000001000000000000003B"
    ]


def receipt(drill: str, *, days_ago: float, result: str, **fields: object) -> DrillReceipt:
    at = timezone.now() - datetime.timedelta(days=days_ago)
    return DrillReceipt.objects.create(
        drill=drill,
        restore_point=f"{drill}-mark",
        target_time=at - datetime.timedelta(hours=5),
        result=result,
        restore_seconds=41.5,
        data_loss_seconds=0.002,
        archive_lag_seconds=3.0,
        started_at=at - datetime.timedelta(minutes=2),
        finished_at=at,
        **fields,
    )


@pytest.mark.django_db
def test_the_dashboard_reads_the_newest_drill(settings) -> None:
    settings.PITR_DRILL_MAX_AGE_DAYS = 8
    health = pitr_drill_health()
    assert health.errors == [] and health.warnings[0].startswith("no restore drill yet")

    receipt("drill-a", days_ago=2, result="passed", details={"schools": 3})
    receipt("drill-a", days_ago=2, result="passed", school_id=7, school_name="North")
    health = pitr_drill_health()
    assert health.errors == [] and health.warnings == []
    assert health.detail.startswith("drill drill-a passed 2.0 d ago: 3 school(s) equal")
    assert "restore 41.5 s, data-loss window 0.002 s, archive lag 3 s" in health.detail
    assert [r.school_name for r in drill_receipts_newest()] == ["", "North"]

    receipt(
        "drill-b",
        days_ago=1,
        result="failed",
        details={"failed_schools": ["North"], "error": ""},
    )
    assert pitr_drill_health().errors == [
        "drill drill-b failed 1.0 d ago: restored records differ for North"
    ]

    receipt("drill-c", days_ago=9, result="passed")
    DrillReceipt.objects.filter(drill__in=["drill-a", "drill-b"]).delete()
    assert pitr_drill_health().errors == ["the newest restore drill is 9.0 days old (more than 8)"]


@pytest.mark.django_db
def test_the_pitr_drill_check_is_on_the_dashboard_when_pitr_is_on(settings) -> None:
    from monitoring.checks import _gather, configured_checks, report_from

    settings.PITR_ENABLED = False
    assert "pitr_drill" not in [e.name for e in configured_checks()]
    settings.PITR_ENABLED = True
    entries = [e for e in configured_checks() if e.name == "pitr_drill"]
    assert [e.critical for e in entries] == [False]
    receipt("drill-x", days_ago=0.5, result="failed", details={"error": "recovery ended early"})
    outcome = report_from(entries, async_to_sync(_gather)(entries)).outcome("pitr_drill")
    assert outcome is not None and outcome.state == "failed"
    assert outcome.message == "drill drill-x failed 0.5 d ago: recovery ended early"


@pytest.mark.django_db
def test_receipts_and_marks_are_read_only_in_the_admin(client) -> None:
    client.force_login(district_admin())
    north = SchoolFactory(name="North")
    row = receipt(
        "drill-a",
        days_ago=1,
        result="failed",
        school_id=north.pk,
        school_name="North",
        details={"differ": {"students_student": {"expected": [3, "ab"], "found": [2, "cd"]}}},
    )
    changelist = client.get(reverse("admin:backups_drillreceipt_changelist"))
    assert changelist.status_code == 200 and b"North" in changelist.content
    page = client.get(reverse("admin:backups_drillreceipt_change", args=[row.pk]))
    assert page.status_code == 200 and b"students_student" in page.content
    assert b'name="_save"' not in page.content
    assert client.get(reverse("admin:backups_drillreceipt_add")).status_code == 403
    assert client.get(reverse("admin:backups_drillmark_changelist")).status_code == 200


@pytest.mark.django_db
def test_a_drill_that_cannot_start_fails_with_receipt_and_alert(settings) -> None:
    from backups.services.drill import pitr_drill_run

    settings.PITR_ENABLED = True
    settings.ADMINS = [("Ops", "ops@example.org")]
    outcome = pitr_drill_run(mark_name="drill-nowhere")
    assert not outcome.passed and "no drill mark named 'drill-nowhere'" in outcome.error
    district = DrillReceipt.objects.get()
    assert district.school_id is None and district.result == "failed"
    assert district.failure == "There is no drill mark named 'drill-nowhere'."
    [alert] = mail.outbox
    assert "Restore drill failed" in alert.subject and outcome.drill in alert.body


@pytest.mark.django_db
def test_marks_older_than_eight_days_go_with_their_restore_points() -> None:
    from backups.services.drill import MARKS_KEPT, _marks_prune

    now = timezone.now()
    for days in (1, 9):
        name = f"drill-{days}"
        at = now - datetime.timedelta(days=days)
        RestorePoint.objects.create(name=name, created_at=at, lsn="0/1")
        DrillMark.objects.create(name=name, created_at=at, fingerprint={"tables": {}})
    RestorePoint.objects.create(name="before-rollover", created_at=now - 30 * MARKS_KEPT, lsn="0/1")
    assert _marks_prune(before=now - MARKS_KEPT) == 1
    assert list(DrillMark.objects.values_list("name", flat=True)) == ["drill-1"]
    assert sorted(RestorePoint.objects.values_list("name", flat=True)) == [
        "before-rollover",
        "drill-1",
    ]


def test_beat_marks_every_few_hours_and_drills_on_sunday(settings) -> None:
    import backups.schedules

    settings.PITR_ENABLED = True
    settings.PITR_DRILL_MARK_HOURS = 3
    try:
        jobs = {j.task: j for j in importlib.reload(backups.schedules).PERIODIC_JOBS}
    finally:
        settings.PITR_ENABLED = False
        importlib.reload(backups.schedules)
    mark, drill = jobs["backups.tasks.pitr_drill_mark"], jobs["backups.tasks.pitr_drill"]
    assert (mark.schedule.minute, mark.schedule.hour) == ("0", "*/3")
    assert mark.kwargs == {"jitter_seconds": 3 * 3600 - 60}
    assert (drill.schedule.minute, drill.schedule.hour, drill.schedule.day_of_week) == (
        "30",
        "5",
        "0",
    )


def test_a_drill_removes_the_clusters_of_drills_that_died(settings, tmp_path) -> None:
    from backups.services.drill import _sweep

    settings.PITR_RESTORE_DIR = tmp_path
    for name in ("drill-20261206T053000Z", "drill-20261206T053000Z.sock", "restore-20261201"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "PG_VERSION").write_text("15\n")
    (tmp_path / "drill-20261206T053000Z.log").write_text("FATAL: ...\n")
    _sweep(say=lambda message: None)
    # An operator's own restore and the dead drill's log stay.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "drill-20261206T053000Z.log",
        "restore-20261201",
    ]
