"""Point-in-time recovery, end to end on a cluster of the test's own: pgBackRest archives its
WAL (encrypted, zstd) into a local repository; `backup_now --physical`, `pitr restore-point`
and `restore_backup --to-time / --to-restore-point [--switch]` run as an operator runs them.
"""

from __future__ import annotations

import datetime
import json
import time

import pytest

from tests.backups.pitr import (
    PitrPlatform,
    add_students,
    available,
    count,
    pitr_platform,
    restore,
)

# One cluster for the module, its tests in order (each builds on the last), on one worker.
pytestmark = [
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
    pytest.mark.xdist_group(name="pitr"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]


@pytest.fixture(scope="module")
def platform() -> PitrPlatform:
    with pitr_platform() as p:
        yield p


def test_setup_archives_and_a_physical_backup_is_recorded(platform: PitrPlatform) -> None:
    out = platform.manage("pitr", "setup").stdout
    assert "archives its WAL through pgBackRest" in out
    # The secrets are apart, readable by the data directory's owner only.
    secrets = platform.root / "conf" / "conf.d" / "secrets.conf"
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    assert "cipher-pass" not in (platform.root / "conf" / "pgbackrest.conf").read_text()
    done = platform.manage("backup_now", "--physical", "full")
    assert "Physical backup #" in done.stdout and "(Full," in done.stdout
    run = json.loads(
        platform.shell(
            "import json; from backups.models import BackupRun; "
            "r = BackupRun.objects.physical().get(); "
            "print(json.dumps(dict(status=r.status, label=r.label, type=r.backup_type, "
            "wal=r.wal_start, size=r.raw_size, stored=r.stored_size, dest=r.destinations)))"
        ).splitlines()[-1]
    )
    assert run["status"] == "succeeded" and run["type"] == "full"
    assert run["label"].endswith("F") and run["wal"] and run["size"] > run["stored"] > 0
    assert run["dest"] == [
        {"name": "local", "repo": "repo1", "label": run["label"], "confirmed": True}
    ]
    # The repository is encrypted: no file in it starts with zstd's magic or holds a table name.
    files = [f for f in (platform.root / "repo").rglob("*") if f.is_file()]
    assert files
    for f in files:
        head = f.read_bytes()[:4096]
        assert not head.startswith(b"\x28\xb5\x2f\xfd") and b"students_student" not in head
    status = json.loads(platform.manage("pitr", "status", "--json").stdout)
    assert status["archive"]["archive_mode"] == "on"
    assert status["archive"]["failed_count"] == 0
    assert [s["label"] for s in status["sets"]] == [run["label"]]


def test_restore_to_a_moment_builds_a_new_cluster_and_leaves_the_live_one(
    platform: PitrPlatform,
) -> None:
    add_students(platform, "A", 30)
    time.sleep(1.2)
    moment = add_students(platform, "B", 20)
    time.sleep(1.2)
    add_students(platform, "C", 10)  # after the moment: not restored
    live_before = count(platform, "")

    done = restore(platform, "--to-time", moment.isoformat())
    assert "Restored to" in done.stdout, done.stdout + done.stderr
    port = int(done.stdout.split("127.0.0.1:")[1].split(".")[0])
    assert count(platform, "A", port) == 30
    assert count(platform, "B", port) == 20
    assert count(platform, "C", port) == 0
    # The live cluster is untouched and still takes writes.
    assert count(platform, "") == live_before
    add_students(platform, "D", 1)
    # The restore and its operator are in the audit trail.
    assert "restore_to_moment" in platform.psql(
        "SELECT string_agg(action, ',') FROM audit_auditevent WHERE action LIKE 'restore%'"
    )
    restored = next(
        d for d in (platform.root / "restores").iterdir() if (d / "PG_VERSION").exists()
    )
    platform.ctl("-m", "fast", "stop", data=restored)


def test_times_out_of_reach_are_refused_clearly(platform: PitrPlatform) -> None:
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
    done = restore(platform, "--to-time", future, check=False)
    assert done.returncode == 1 and "is in the future" in done.stderr
    done = restore(platform, "--to-time", "2001-01-01 00:00:00+00", check=False)
    assert done.returncode == 1 and "before the oldest backup" in done.stderr
    done = restore(platform, "--to-time", "yesterday", check=False)
    assert done.returncode == 1 and "is not a moment" in done.stderr
    done = restore(platform, "--to-time", "2026-12-01 10:00:00", check=False)
    assert done.returncode == 1 and "has no time zone" in done.stderr


def test_restore_point_then_switch_makes_the_restored_cluster_live(platform: PitrPlatform) -> None:
    add_students(platform, "E", 5)
    out = platform.manage("pitr", "restore-point", "before-mistake").stdout
    assert "Restore point before-mistake" in out
    platform.psql("DELETE FROM students_student WHERE student_number LIKE 'E%'")  # the mistake
    done = restore(platform, "--to-restore-point", "before-mistake", "--switch")
    assert "now the live database" in done.stdout, done.stdout + done.stderr
    # Same port, the pre-mistake rows back, a new timeline; the old data directory kept.
    assert count(platform, "E") == 5
    assert int(platform.psql("SELECT timeline_id FROM pg_control_checkpoint()")) >= 2
    kept = list(platform.root.glob("data.before-restore-*"))
    assert len(kept) == 1 and (kept[0] / "PG_VERSION").exists()
    # The restored cluster archives again, into the same stanza, and a backup can be taken.
    platform.manage("pitr", "setup")
    assert "(Differential," in platform.manage("backup_now", "--physical", "diff").stdout
    # "Just before the switch" was marked too.
    assert (
        platform.psql("SELECT count(*) FROM backups_restorepoint WHERE reason = 'restore'") == "1"
    )


def test_a_csv_import_is_preceded_by_a_restore_point(platform: PitrPlatform) -> None:
    """students.signals.risky_operation → backups: the point is in the WAL and recorded
    with the school, so "just before the import" is one restore command away."""
    out = platform.shell(
        "from students.models import School\n"
        "from students.csv_io import student_import_parse, student_import_apply\n"
        "from students.row_security import acting_for\n"
        "school = School.objects.get(code='NORTH')\n"
        "data = (b'student_number,first_name,last_name,date_of_birth\\n'\n"
        "        b'IMP-1,Ann,Lee,2015-01-01\\n')\n"
        "with acting_for([school.pk]):\n"
        "    plan = student_import_parse(school=school, data=data)\n"
        "    student_import_apply(school=school, plan=plan, actor=None)\n"
        "from backups.models import RestorePoint\n"
        "p = RestorePoint.objects.get(reason='import')\n"
        "print(p.name, p.school_id == school.pk, p.lsn, p.description)\n"
    ).splitlines()[-1]
    name, same_school, lsn, *description = out.split()
    assert name.startswith("import-") and same_school == "True" and "/" in lsn
    assert "CSV import of 1 student" in " ".join(description)
    # Its position is in the WAL the live cluster has written (the restore to a point
    # above shows a recorded point is reachable).
    assert platform.psql(f"SELECT pg_current_wal_lsn() >= '{lsn}'::pg_lsn") == "t"
