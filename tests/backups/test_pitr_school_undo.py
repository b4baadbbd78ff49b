"""One school's mistake undone without rewinding the district, end to end on a cluster of the
test's own: two schools with a class, marks and attendance; a physical backup; a moment T;
then a teacher at North wipes a class's grades and registers while North and South go on
working. `restore_backup --to-time T --school NORTH --side` shows the differences, writes
North's old rows back, and leaves everything else as it is.
"""

from __future__ import annotations

import datetime
import json
import os
import pty
import subprocess
import time

import pytest

from tests.backups.pitr import (
    OPERATOR,
    PitrPlatform,
    available,
    operator_code,
    pitr_platform,
    restore,
)
from tests.helpers import PYTHON, REPO

# One cluster for the module, its tests in order (each builds on the last), on one worker.
pytestmark = [
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
    pytest.mark.xdist_group(name="pitr-undo"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]

SEED = """
import datetime
from decimal import Decimal as D
from students.models import AcademicYear, GradeLevel, School, Section, Subject, Term
from students.services import (AttendanceMark, GradeEntry, assessment_save,
    attendance_record_bulk, grade_record_bulk, student_create, student_enrol)
from students.models import Assessment
today = datetime.date.today()
days = datetime.timedelta
for code in ("NORTH", "SOUTH"):
    school = School.objects.get(code=code)
    year = AcademicYear.objects.create(school=school, name="2026-2027", is_current=True,
        starts_on=today - days(90), ends_on=today + days(200))
    term = Term.objects.create(school=school, academic_year=year, name="Autumn",
        starts_on=year.starts_on, ends_on=today + days(30))
    level = GradeLevel.objects.create(school=school, name="Grade 7", order=7)
    maths = Subject.objects.create(school=school, code="MATH", name="Mathematics")
    classes = {name: Section.objects.create(school=school, academic_year=year,
        grade_level=level, name=name) for name in ("7A", "7B")}
    pupils = {}
    for i, (first, last, name) in enumerate([("Ada", "Lovelace", "7A"), ("Alan", "Turing", "7A"),
            ("Grace", "Hopper", "7A"), ("Edsger", "Dijkstra", "7A"),
            ("Barbara", "Liskov", "7B")], start=1):
        s = student_create(school=school, actor=None, student_number=f"{code[0]}-{i:03d}",
            first_name=first, last_name=last, date_of_birth=datetime.date(2014, 1, i),
            grade_level=level, admitted_on=today - days(90))
        student_enrol(student=s, section=classes[name], actor=None, on=today - days(60))
        pupils[i] = s
    def assessment(name, section, top):
        return assessment_save(assessment=Assessment(school=school, section=section,
            subject=maths, term=term, name=name, max_score=D(top)), actor=None)
    quiz = assessment("Quiz", classes["7A"], 10)
    test = assessment("Test", classes["7A"], 20)
    quiz_b = assessment("Quiz 7B", classes["7B"], 10)
    grade_record_bulk(assessment=quiz, actor=None, entries={
        pupils[1].pk: GradeEntry(D("8.50"), "well done"), pupils[2].pk: GradeEntry(D("7")),
        pupils[3].pk: GradeEntry(D("9"), "neat"), pupils[4].pk: GradeEntry(D("6"))})
    grade_record_bulk(assessment=test, actor=None, entries={
        pupils[1].pk: GradeEntry(D("15")), pupils[2].pk: GradeEntry(D("12")),
        pupils[3].pk: GradeEntry(D("18")), pupils[4].pk: GradeEntry(D("11"))})
    grade_record_bulk(assessment=quiz_b, actor=None, entries={pupils[5].pk: GradeEntry(D("9"))})
    for back in (2, 1):
        attendance_record_bulk(section=classes["7A"], date=today - days(back), actor=None,
            marks={pupils[1].pk: AttendanceMark("present"),
                   pupils[2].pk: AttendanceMark("late", "bus"),
                   pupils[3].pk: AttendanceMark("excused", "dentist"),
                   pupils[4].pk: AttendanceMark("present")})
        attendance_record_bulk(section=classes["7B"], date=today - days(back), actor=None,
            marks={pupils[5].pk: AttendanceMark("present")})
"""

# After T: North's teacher moves a pupil's mark to 7B's register, wipes 7A's quiz marks and
# registers, changes a test mark, deletes and re-enters another (a new row for the same
# student and assessment), and marks a new essay; 7B's register is corrected; South wipes
# its own quiz and corrects a register.
MISTAKES = """
import datetime
from decimal import Decimal as D
from students.models import Assessment, AttendanceRecord, School, Section, Student
from students.services import (AttendanceMark, GradeEntry, assessment_save,
    attendance_record_bulk, grade_delete_bulk, grade_record_bulk)
today = datetime.date.today()
north, south = School.objects.get(code="NORTH"), School.objects.get(code="SOUTH")
def pupil(number):
    return Student.objects.get(student_number=number)
def named(school, name):
    return Assessment.objects.get(school=school, name=name)
quiz = named(north, "Quiz")
grade_delete_bulk(assessment=quiz, actor=None,
    student_ids=list(quiz.grades.values_list("student_id", flat=True)))
AttendanceRecord.objects.filter(student=pupil("N-004"), date=today - datetime.timedelta(days=1)
    ).update(section=Section.objects.get(school=north, name="7B"))
AttendanceRecord.objects.filter(school=north, section__name="7A").delete()
test = named(north, "Test")
grade_record_bulk(assessment=test, actor=None, entries={pupil("N-001").pk: GradeEntry(D("3"))})
grade_delete_bulk(assessment=test, actor=None, student_ids=[pupil("N-002").pk])
grade_record_bulk(assessment=test, actor=None, entries={pupil("N-002").pk: GradeEntry(D("10"))})
essay = assessment_save(assessment=Assessment(school=north, section=quiz.section,
    subject=quiz.subject, term=quiz.term, name="Essay", max_score=D("20")), actor=None)
grade_record_bulk(assessment=essay, actor=None, entries={pupil("N-002").pk: GradeEntry(D("17"))})
attendance_record_bulk(section=Section.objects.get(school=north, name="7B"),
    date=today - datetime.timedelta(days=1), actor=None,
    marks={pupil("N-005").pk: AttendanceMark("late", "corrected")})
quiz_south = named(south, "Quiz")
grade_delete_bulk(assessment=quiz_south, actor=None,
    student_ids=list(quiz_south.grades.values_list("student_id", flat=True)))
attendance_record_bulk(section=Section.objects.get(school=south, name="7A"),
    date=today - datetime.timedelta(days=1), actor=None,
    marks={pupil("S-001").pk: AttendanceMark("late", "corrected")})
"""


@pytest.fixture(scope="module")
def platform() -> PitrPlatform:
    with pitr_platform() as p:
        yield p


def server_now(p: PitrPlatform) -> datetime.datetime:
    return datetime.datetime.fromisoformat(p.psql("SELECT clock_timestamp()"))


def table(p: PitrPlatform, sql: str) -> dict[str, str]:
    """Rows as `key -> values`, the key being the first column (trailing spaces dropped: psql's
    output is stripped as a whole)."""
    rows = (line.split("|", 1) for line in p.psql(sql).splitlines() if line)
    return {key: values.rstrip() for key, values in rows}


def grades(p: PitrPlatform, code: str) -> dict[str, str]:
    return table(
        p,
        "SELECT st.student_number || ' ' || a.name, g.id || ' ' || g.score || ' ' || g.comment "
        "FROM students_grade g JOIN students_student st ON st.id = g.student_id "
        "JOIN students_assessment a ON a.id = g.assessment_id "
        f"JOIN students_school s ON s.id = g.school_id WHERE s.code = '{code}'",
    )


def attendance(p: PitrPlatform, code: str) -> dict[str, str]:
    return table(
        p,
        "SELECT st.student_number || ' ' || r.date || ' ' || r.period, "
        "r.id || ' ' || c.name || ' ' || r.status || ' ' || r.note "
        "FROM students_attendancerecord r JOIN students_student st ON st.id = r.student_id "
        "JOIN students_section c ON c.id = r.section_id "
        f"JOIN students_school s ON s.id = r.school_id WHERE s.code = '{code}'",
    )


def enrolments(p: PitrPlatform, code: str) -> dict[str, str]:
    return table(
        p,
        "SELECT e.id, st.student_number || ' ' || c.name || ' ' || e.started_on || ' ' || "
        "coalesce(e.ended_on::text, 'open') FROM students_enrollment e "
        "JOIN students_student st ON st.id = e.student_id "
        "JOIN students_section c ON c.id = e.section_id "
        f"JOIN students_school s ON s.id = e.school_id WHERE s.code = '{code}'",
    )


def record(p: PitrPlatform) -> dict[str, dict[str, str]]:
    """Everything an undo may touch, in both schools."""
    return {
        f"{what.__name__} {code}": what(p, code)
        for what in (grades, attendance, enrolments)
        for code in ("NORTH", "SOUTH")
    }


def undo_events(p: PitrPlatform) -> list[dict]:
    out = p.psql(
        "SELECT json_build_object('action', action, 'actor', actor_repr, 'school', school_id, "
        "'target_type', target_type, 'target_id', target_id, 'changes', changes) "
        "FROM audit_auditevent WHERE action LIKE 'school_undo%' ORDER BY id"
    )
    return [json.loads(line) for line in out.splitlines() if line]


def no_side_cluster_left(p: PitrPlatform) -> bool:
    restores = p.root / "restores"
    return not any(d.is_dir() and (d / "PG_VERSION").exists() for d in restores.glob("*"))


@pytest.fixture(scope="module")
def scenario(platform: PitrPlatform) -> dict:
    platform.manage("pitr", "setup")
    platform.shell(SEED)
    platform.manage("backup_now", "--physical", "full")
    time.sleep(1.2)
    at_target = record(platform)
    moment = server_now(platform)
    time.sleep(1.2)
    platform.shell(MISTAKES)
    return {"moment": moment, "at_target": at_target, "after_mistakes": record(platform)}


def test_the_school_option_is_checked_before_anything_is_restored(
    platform: PitrPlatform, scenario: dict
) -> None:
    moment = scenario["moment"].isoformat()
    for args, message in (
        (["--to-time", moment, "--school", "NORTH"], "--school needs --side"),
        (["--school", "NORTH", "--side"], "give --to-time or --to-restore-point"),
        (["--to-time", moment, "--school", "NORTH", "--side", "--switch"], "do not go together"),
        (["--to-time", moment, "--side"], "--side goes with --school"),
        (["--to-time", moment, "--school", "EAST", "--side"], "no school with the code 'EAST'"),
        (["--to-time", moment, "--school", "NORTH", "--side", "--only", "fees"], "not fees"),
    ):
        done = platform.manage("restore_backup", *args, check=False)
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr)
    assert not undo_events(platform)


def test_without_yes_and_without_a_terminal_it_shows_the_differences_and_writes_nothing(
    platform: PitrPlatform, scenario: dict
) -> None:
    done = restore(
        platform,
        "--to-time",
        scenario["moment"].isoformat(),
        "--school",
        "NORTH",
        "--side",
        "--section",
        "7A",
    )
    out = done.stdout
    print(out)
    assert "North (NORTH), class 7A (2026-2027)" in out
    # Counts per table: 4 quiz marks and 7 register marks gone, one moved to 7B, two test
    # marks changed (one deleted and entered again: the same mark, by its student and
    # assessment), an essay and its mark added. 7B's correction is outside the class asked for.
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:2] == "  "}
    assert lines["assessments"] == ["0", "0", "1"]
    assert lines["grades"] == ["4", "2", "1"]
    assert lines["attendance"] == ["7", "1", "0"]
    assert "class: 7A then, 7B now" in out
    assert lines["enrolments"] == ["0", "0", "0"]
    assert '- N-001 Ada Lovelace · 7A · Quiz · 8.50/10.00 "well done"' in out
    assert "~ N-001 Ada Lovelace · 7A · Test · 15.00/20.00" in out
    assert "score: 15.00 then, 3.00 now" in out
    assert "score: 12.00 then, 10.00 now" in out
    assert "+ N-002 Alan Turing · 7A · Essay · 17.00/20.00" in out
    assert "N-003 Grace Hopper · 7A · excused" in out and '"dentist"' in out
    assert "Nothing was written (no terminal to confirm on)" in out
    assert record(platform) == scenario["after_mistakes"]
    assert not undo_events(platform)
    assert no_side_cluster_left(platform)


def test_the_undo_puts_north_back_and_leaves_later_changes_and_south_alone(
    platform: PitrPlatform, scenario: dict
) -> None:
    before, after = scenario["at_target"], scenario["after_mistakes"]
    done = restore(
        platform,
        "--to-time",
        scenario["moment"].isoformat(),
        "--school",
        "NORTH",
        "--side",
        "--section",
        "7A",
        "--yes",
    )
    out = done.stdout
    print(out)
    assert "Written back for NORTH" in out and "11 row(s) re-created, 3 restored" in out
    now = record(platform)
    # The quiz marks and the registers are back, with their own ids and values.
    north_grades = now["grades NORTH"]
    for key, value in before["grades NORTH"].items():
        if key == "N-002 Test":
            # Deleted and entered again after T: the new row keeps its id, with the old score.
            assert north_grades[key].split(" ", 1)[1] == value.split(" ", 1)[1]
            assert north_grades[key].split()[0] == after["grades NORTH"][key].split()[0]
        else:
            assert north_grades[key] == value, key
    # The essay's mark, entered after T, stays; so does everything outside 7A and South.
    assert north_grades["N-002 Essay"] == after["grades NORTH"]["N-002 Essay"]
    assert set(north_grades) == set(before["grades NORTH"]) | {"N-002 Essay"}
    north_registers = {k: v for k, v in now["attendance NORTH"].items() if " 7A " in v}
    assert north_registers == {k: v for k, v in before["attendance NORTH"].items() if " 7A " in v}
    assert {k: v for k, v in now["attendance NORTH"].items() if " 7B " in v} == {
        k: v for k, v in after["attendance NORTH"].items() if " 7B " in v and k[:5] != "N-004"
    }
    assert now["grades SOUTH"] == after["grades SOUTH"] != before["grades SOUTH"]
    assert now["attendance SOUTH"] == after["attendance SOUTH"] != before["attendance SOUTH"]
    assert now["enrolments NORTH"] == after["enrolments NORTH"]

    # Audited: a row per mark, one for the undo, naming the operator, the target and the
    # restore point made just before (itself recorded for North).
    events = undo_events(platform)
    point = platform.psql(
        "SELECT name || '|' || reason || '|' || school_id FROM backups_restorepoint "
        "WHERE description LIKE 'before undoing NORTH%'"
    ).split("|")
    north_id = platform.psql("SELECT id FROM students_school WHERE code = 'NORTH'")
    assert point[1:] == ["restore", north_id]
    assert [e["action"] for e in events].count("school_undo_recreate") == 11
    assert [e["action"] for e in events].count("school_undo_restore") == 3
    assert [e["action"] for e in events][-1] == "school_undo"
    for event in events:
        assert event["actor"] == OPERATOR and str(event["school"]) == north_id
        assert event["changes"]["restore_point"] == point[0]
        assert event["changes"]["target"] == scenario["moment"].isoformat()
    restored = next(e for e in events if e["action"] == "school_undo_restore")
    assert restored["changes"]["fields"] in ({"score": ["3.00", "15.00"]},)
    # The model history of the re-created rows names the operator too.
    assert (
        int(
            platform.psql(
                "SELECT count(*) FROM audit_modelchange m JOIN auth_user u ON u.id = m.actor_id "
                f"WHERE u.username = '{OPERATOR}' AND m.school_id = {north_id}"
            )
        )
        >= 14
    )
    assert no_side_cluster_left(platform)


def test_a_conflict_rolls_the_whole_undo_back_and_skip_conflicts_writes_the_rest(
    platform: PitrPlatform, scenario: dict
) -> None:
    time.sleep(1.2)
    moment = server_now(platform).isoformat()
    time.sleep(1.2)
    # Ada's and Alan's places in 7A are deleted by mistake; Alan is then enrolled in 7B, so
    # his old place cannot come back open beside the new one (one open enrolment a year).
    platform.shell(
        "from students.models import Enrollment, Section, Student\n"
        "from students.services import student_enrol\n"
        "Enrollment.objects.filter(student__student_number__in=['N-001', 'N-002'], "
        "section__name='7A').delete()\n"
        "student_enrol(student=Student.objects.get(student_number='N-002'), "
        "section=Section.objects.get(school__code='NORTH', name='7B'), actor=None)\n"
    )
    before = record(platform)
    events = len(undo_events(platform))
    args = ["--to-time", moment, "--school", "NORTH", "--side", "--only", "enrolments", "--yes"]
    done = restore(platform, *args, check=False)
    print(done.stdout, done.stderr)
    assert done.returncode == 1
    assert "enrolments #" in done.stderr and "N-002 Alan Turing · 7A" in done.stderr
    assert "enrollment_one_active_per_year" in done.stderr
    assert "another open enrolment that year" in done.stderr
    assert "nothing was written" in done.stderr
    # Ada's place, written before Alan's was refused, went with the rollback.
    assert record(platform) == before
    assert len(undo_events(platform)) == events
    assert no_side_cluster_left(platform)

    done = restore(platform, *args, "--skip-conflicts")
    print(done.stdout)
    assert "1 row(s) re-created, 0 restored, 0 removed, 1 skipped" in done.stdout
    assert "skipped N-002 Alan Turing · 7A" in done.stdout
    now = enrolments(platform, "NORTH")
    assert sum(" 7A " in v and v.startswith("N-001") for v in now.values()) == 1
    assert sum(v.startswith("N-002") for v in now.values()) == 1  # his 7B place only
    summary = undo_events(platform)[-1]
    assert summary["action"] == "school_undo"
    assert [s["table"] for s in summary["changes"]["skipped"]] == ["enrolments"]

    # With --also-remove-added, Alan's place made since goes first and his old one comes
    # back; confirmed by typing the school's code at a terminal.
    master, terminal = pty.openpty()
    child = subprocess.Popen(
        [PYTHON, "manage.py", "restore_backup", *args[:-1], "--also-remove-added"]
        + ["--operator", OPERATOR, "--otp-token", operator_code()],
        cwd=REPO,
        env=platform.env(),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(terminal)
    os.write(master, b"NORTH\n")
    out, err = child.communicate(timeout=900)
    os.close(master)
    print(out, err)
    assert child.returncode == 0, err
    assert "Type the school's code (NORTH) to write 2 row(s) back" in out
    assert "1 row(s) re-created, 0 restored, 1 removed, 0 skipped" in out
    now = enrolments(platform, "NORTH")
    assert sorted(v.rsplit(" ", 2)[0] for v in now.values() if v[:5] in ("N-001", "N-002")) == [
        "N-001 7A",
        "N-002 7A",
    ]
    assert undo_events(platform)[-2]["action"] == "school_undo_recreate"
    removed = [e for e in undo_events(platform) if e["action"] == "school_undo_remove"]
    assert len(removed) == 1 and removed[0]["changes"]["values"]["section_id"]
