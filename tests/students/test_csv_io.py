"""CSV export and import of students with guardians: dry run, all-or-nothing apply, round trip."""

from __future__ import annotations

import copy
import csv
import datetime
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from students.csv_io import (
    STUDENT_CSV_COLUMNS,
    ImportFailed,
    ImportPlan,
    student_csv_export,
    student_import_apply,
    student_import_parse,
)
from students.models import GradeLevel, Guardian, Student, StudentGuardian
from tests.students.factories import (
    GradeLevelFactory,
    GuardianFactory,
    SchoolFactory,
    StudentFactory,
    StudentGuardianFactory,
)

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def export(school) -> bytes:
    out = io.StringIO()
    student_csv_export(
        students=Student.objects.for_school(school).order_by("student_number"), out=out
    )
    return out.getvalue().encode("utf-8")


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def make_csv(rows: list[dict[str, str]], columns: list[str] | None = None) -> bytes:
    columns = columns or STUDENT_CSV_COLUMNS
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row.get(name, "") for name in columns})
    return out.getvalue().encode("utf-8")


def good_row(number: str, **values: str) -> dict[str, str]:
    return {
        "student_number": number,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "date_of_birth": "2013-12-10",
        "grade_level": "Grade 7",
        "status": "active",
        "guardian1_first_name": "Anne",
        "guardian1_last_name": "Milbanke",
        "guardian1_relationship": "mother",
        "guardian1_primary": "yes",
        "guardian1_can_pick_up": "yes",
        **values,
    }


def counts() -> tuple[int, int, int]:
    return Student.objects.count(), Guardian.objects.count(), StudentGuardian.objects.count()


def problems(plan: ImportPlan) -> set[tuple[int | None, str | None]]:
    return {(problem.line, problem.column) for problem in plan.errors}


def student_snapshot(school) -> list[dict]:
    return list(
        Student.objects.for_school(school)
        .order_by("student_number")
        .values(
            "pk",
            "student_number",
            "first_name",
            "middle_name",
            "last_name",
            "preferred_name",
            "date_of_birth",
            "gender",
            "grade_level",
            "status",
            "email",
            "phone",
            "address",
            "medical_notes",
            "admitted_on",
            "notes",
        )
    )


def guardian_snapshot(school) -> list[tuple]:
    return list(
        StudentGuardian.objects.for_school(school)
        .order_by("student__student_number", "id")
        .values_list(
            "student__student_number",
            "guardian__pk",
            "guardian__first_name",
            "guardian__last_name",
            "guardian__email",
            "guardian__phone",
            "relationship",
            "is_primary",
            "can_pick_up",
        )
    )


@pytest.fixture
def rich_world(world):
    """The world with the awkward values a real school has: accents, quotes, line breaks,
    a second guardian, values a spreadsheet would take for formulas."""
    first = world.students[0]
    first.first_name = "José"
    first.middle_name = "María"
    first.preferred_name = "Pepe"
    first.medical_notes = 'Peanuts, "severe"\nEpiPen in the front pocket'
    first.address = "12 Elm Street\nNorthtown"
    first.phone = "+1 555 0101"
    first.gender = "male"
    first.email = "jose@example.org"
    first.save()
    StudentGuardianFactory(
        school=world.school,
        student=first,
        relationship=StudentGuardian.Relationship.FATHER,
        is_primary=False,
        can_pick_up=False,
        guardian__first_name="Zoltan",
        guardian__last_name="Ágoston",
    )
    world.outsider.status = Student.Status.WITHDRAWN
    world.outsider.grade_level = None
    world.outsider.save()
    return world


# ---------------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------------
def test_export_reimported_into_the_same_school_updates_and_changes_nothing(rich_world) -> None:
    school = rich_world.school
    data = export(school)
    students_before, guardians_before = student_snapshot(school), guardian_snapshot(school)
    counts_before = counts()

    plan = student_import_parse(school=school, data=data)
    assert plan.errors == []
    assert (plan.creates, plan.updates) == (0, 4)
    result = student_import_apply(school=school, plan=plan, actor=rich_world.registrar)

    assert (result.created, result.updated, result.guardians_created) == (0, 4, 0)
    assert counts() == counts_before
    assert student_snapshot(school) == students_before
    assert guardian_snapshot(school) == guardians_before
    assert export(school) == data
    event = AuditEvent.objects.get(action="import")
    assert event.changes == {"created": 0, "updated": 4}
    assert event.school_id == school.pk
    assert event.actor == rich_world.registrar


def test_export_imported_into_a_fresh_school_creates_the_same_data(rich_world) -> None:
    data = export(rich_world.school)
    fresh = SchoolFactory(name="Fresh School", code="fresh")
    GradeLevelFactory(school=fresh, name="Grade 7", order=7)

    plan = student_import_parse(school=fresh, data=data)
    assert plan.errors == []
    assert (plan.creates, plan.updates) == (4, 0)
    result = student_import_apply(school=fresh, plan=plan, actor=rich_world.admin)

    assert (result.created, result.updated, result.guardians_created) == (4, 0, 4)
    copied = export(fresh)
    assert rows_of(copied) == rows_of(data)  # every column of every row
    assert copied == data
    jose = Student.objects.for_school(fresh).get(first_name="José")
    assert jose.medical_notes == 'Peanuts, "severe"\nEpiPen in the front pocket'
    assert jose.grade_level.school == fresh
    assert [link.guardian.last_name for link in jose.guardian_links.order_by("-is_primary")][
        1
    ] == "Ágoston"


def test_spreadsheet_formulas_are_escaped_on_export_and_restored_on_import(world) -> None:
    student = world.students[0]
    student.first_name = "=cmd|' /C calc'!A0"
    student.last_name = "'Quoted"
    student.preferred_name = "@SUM(1+1)"
    student.medical_notes = "-2 tablets"
    student.save()
    data = export(world.school)

    cells = rows_of(data)
    exported = next(row for row in cells if row["student_number"] == student.student_number)
    assert exported["first_name"] == "'=cmd|' /C calc'!A0"
    assert exported["last_name"] == "''Quoted"
    assert exported["preferred_name"] == "'@SUM(1+1)"
    assert exported["medical_notes"] == "'-2 tablets"

    fresh = SchoolFactory(name="Fresh School", code="fresh")
    GradeLevelFactory(school=fresh, name="Grade 7", order=7)
    plan = student_import_parse(school=fresh, data=data)
    assert plan.errors == []
    student_import_apply(school=fresh, plan=plan, actor=None)
    copy_ = Student.objects.for_school(fresh).get(student_number=student.student_number)
    assert copy_.first_name == "=cmd|' /C calc'!A0"
    assert copy_.last_name == "'Quoted"
    assert copy_.preferred_name == "@SUM(1+1)"
    assert copy_.medical_notes == "-2 tablets"


# ---------------------------------------------------------------------------------------------
# The dry run
# ---------------------------------------------------------------------------------------------
def test_dry_run_reports_every_bad_row_with_its_line_and_writes_nothing(world, today) -> None:
    tomorrow = (today + datetime.timedelta(days=1)).isoformat()
    data = make_csv(
        [
            good_row("NEW-1", address="1 Long Road\nSecond line"),  # line 2 (spans 2 text lines)
            good_row("NEW-2", first_name=""),  # line 3
            good_row("NEW-3", date_of_birth="2026-02-30"),  # line 4
            good_row("NEW-4", date_of_birth="31/12/2010"),  # line 5
            good_row("NEW-5", grade_level="Grade 9"),  # line 6
            good_row("NEW-6", status="expelled", email="not-an-email"),  # line 7
            good_row("NEW-7"),  # line 8
            good_row("NEW-8", guardian1_relationship="uncle", guardian1_primary="maybe"),  # line 9
            good_row("NEW-9", date_of_birth=tomorrow),  # line 10
            good_row("NEW-10", last_name="x" * 101),  # line 11
            good_row("NEW 11"),  # line 12
            good_row("NEW-12", guardian1_last_name=""),  # line 13
            good_row("NEW-13", date_of_birth="1899-05-01"),  # line 14
            good_row("NORTH-001", first_name="Updated"),  # line 15: an update, fine
        ]
    )
    before = counts()

    plan = student_import_parse(school=world.school, data=data)

    assert problems(plan) == {
        (3, "first_name"),
        (4, "date_of_birth"),
        (5, "date_of_birth"),
        (6, "grade_level"),
        (7, "status"),
        (7, "email"),
        (9, "guardian1_relationship"),
        (9, "guardian1_primary"),
        (10, "date_of_birth"),
        (11, "last_name"),
        (12, "student_number"),
        (13, "guardian1_last_name"),
        (14, "date_of_birth"),
    }
    by_place = {(p.line, p.column): p.message for p in plan.errors}
    assert "February 2026 has 28 days" in by_place[(4, "date_of_birth")]
    assert "YYYY-MM-DD" in by_place[(5, "date_of_birth")]
    assert "Grade 9" in by_place[(6, "grade_level")]
    assert "Grade 7" in by_place[(6, "grade_level")]  # names the ones that do exist
    assert "future" in by_place[(10, "date_of_birth")]
    assert "at most 100 characters" in by_place[(11, "last_name")]
    assert "1900-01-01" in by_place[(14, "date_of_birth")]
    assert not plan.ok
    assert [row.line for row in plan.rows] == [2, 8, 15]
    assert counts() == before
    assert Student.objects.get(student_number="NORTH-001").first_name != "Updated"
    with pytest.raises(ValueError, match=f"{len(plan.errors)} problem"):
        student_import_apply(school=world.school, plan=plan, actor=None)
    assert counts() == before


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-30", "February 2026 has 28 days"),
        ("2024-02-30", "February 2024 has 29 days"),
        ("2010-13-01", "no month 13"),
        ("31/12/2010", "YYYY-MM-DD"),
        ("12.31.2010", "YYYY-MM-DD"),
        ("last spring", "YYYY-MM-DD"),
    ],
)
def test_impossible_or_ill_formed_dates_are_reported(world, value, expected) -> None:
    plan = student_import_parse(
        school=world.school, data=make_csv([good_row("NEW-1", date_of_birth=value)])
    )
    assert [(p.line, p.column) for p in plan.errors] == [(2, "date_of_birth")]
    assert expected in plan.errors[0].message


def test_latin1_file_is_one_file_level_error_and_changes_nothing(world) -> None:
    data = make_csv([good_row("NEW-1", first_name="José")]).decode().encode("latin-1")
    assert b"Jos\xe9" in data
    before = counts()

    plan = student_import_parse(school=world.school, data=data)

    assert len(plan.errors) == 1
    error = plan.errors[0]
    assert error.line is None and error.column is None
    offset = data.index(b"\xe9")
    assert f"byte {offset}" in error.message
    assert "line 2" in error.message
    assert "CSV UTF-8" in error.message
    assert plan.rows == [] and not plan.ok
    assert counts() == before


def test_missing_and_unknown_columns_are_named(world) -> None:
    columns = ["student_number", "first_name", "firstname", "shoe_size"]
    plan = student_import_parse(
        school=world.school, data=make_csv([good_row("NEW-1")], columns=columns)
    )
    messages = [p.message for p in plan.errors]
    assert all(p.line == 1 for p in plan.errors)
    assert any("last_name" in m and "date_of_birth" in m and "Missing" in m for m in messages)
    unknown = next(m for m in messages if m.startswith("Unknown columns"))
    assert "firstname (did you mean first_name?)" in unknown
    assert "shoe_size" in unknown
    assert plan.rows == []


def test_optional_columns_may_be_left_out(world) -> None:
    columns = ["student_number", "first_name", "last_name", "date_of_birth"]
    student = world.students[0]
    grade_before, guardians_before = student.grade_level_id, guardian_snapshot(world.school)
    data = make_csv(
        [good_row("NEW-1"), good_row(student.student_number, first_name="Renamed")], columns
    )

    plan = student_import_parse(school=world.school, data=data)
    assert plan.errors == []
    student_import_apply(school=world.school, plan=plan, actor=None)

    student.refresh_from_db()
    assert student.first_name == "Renamed"
    assert student.grade_level_id == grade_before  # column absent: left as it was
    new = Student.objects.get(student_number="NEW-1")
    assert new.status == Student.Status.ACTIVE and new.grade_level is None
    assert guardian_snapshot(world.school)[: len(guardians_before)] == guardians_before


def test_guardian_columns_need_name_and_relationship(world) -> None:
    columns = ["student_number", "first_name", "last_name", "date_of_birth", "guardian2_email"]
    plan = student_import_parse(school=world.school, data=make_csv([good_row("N-1")], columns))
    assert [p.message for p in plan.errors] == [
        "Guardian 2 columns also need: guardian2_first_name, guardian2_last_name, "
        "guardian2_relationship."
    ]


def test_duplicate_student_numbers_name_both_lines(world) -> None:
    data = make_csv([good_row("NEW-1"), good_row("NEW-2"), good_row("NEW-1", first_name="B")])
    plan = student_import_parse(school=world.school, data=data)
    assert problems(plan) == {(2, "student_number"), (4, "student_number")}
    by_line = {p.line: p.message for p in plan.errors}
    assert "line 4" in by_line[2]
    assert "line 2" in by_line[4]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"\xef\xbb\xbf  \r\n", "empty"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
        (b"\xff\xfes\x00t\x00", "UTF-16"),
        (b"NEW-1,Ada,Lovelace,2013-12-10\r\n", "header"),
        (b"student_number,first_name,last_name,date_of_birth\r\n", "no student rows"),
        (
            b'student_number,first_name,last_name,date_of_birth\r\nN-1,"Ada,L,2013-01-01\r\n',
            "never closed",
        ),
    ],
)
def test_files_that_are_not_student_csv_get_one_clear_error(world, data, expected) -> None:
    plan = student_import_parse(school=world.school, data=data)
    assert len(plan.errors) == 1
    assert expected in plan.errors[0].message
    assert not plan.ok


def test_file_over_the_size_limit_is_refused(world, settings) -> None:
    settings.IMPORT_MAX_BYTES = 100
    plan = student_import_parse(school=world.school, data=make_csv([good_row("NEW-1")]))
    assert len(plan.errors) == 1 and "limit is 100" in plan.errors[0].message


def test_rows_with_the_wrong_number_of_values_are_reported(world) -> None:
    text = (
        "student_number,first_name,last_name,date_of_birth\r\n"
        "N-1,Ada,Lovelace,2013-12-10\r\n"
        "N-2,Ada,Lovelace\r\n"
        "N-3,Ada,Lovelace,2013-12-10,surprise\r\n"
        "N-4,Ada,Lovelace,2013-12-10,,\r\n"  # trailing empty cells, as spreadsheets leave
        ",,,\r\n"  # a blank row is skipped but still counts as a line
        "N-5,Ada,Lovelace,2013-12-10\r\n"
    )
    plan = student_import_parse(school=world.school, data=text.encode())
    assert problems(plan) == {(3, None), (4, None)}
    assert [row.line for row in plan.rows] == [2, 5, 7]


def test_semicolon_separated_file_from_a_european_excel_is_read(world) -> None:
    text = "student_number;first_name;last_name;date_of_birth\r\nN-1;Ada;Lovelace;2013-12-10\r\n"
    plan = student_import_parse(school=world.school, data=text.encode())
    assert plan.errors == [] and plan.creates == 1


def test_labels_and_any_case_are_accepted_for_choices(world) -> None:
    data = make_csv(
        [
            good_row(
                "NEW-1",
                status="Graduated (alumni)",
                grade_level="grade 7",
                guardian1_relationship="Legal guardian",
                guardian1_primary="Y",
                guardian1_can_pick_up="FALSE",
            )
        ]
    )
    plan = student_import_parse(school=world.school, data=data)
    assert plan.errors == []
    student_import_apply(school=world.school, plan=plan, actor=None)
    student = Student.objects.get(student_number="NEW-1")
    assert student.status == Student.Status.GRADUATED
    assert student.grade_level == world.level
    link = student.guardian_links.get()
    assert link.relationship == StudentGuardian.Relationship.LEGAL_GUARDIAN
    assert (link.is_primary, link.can_pick_up) == (True, False)


# ---------------------------------------------------------------------------------------------
# Updates and guardians
# ---------------------------------------------------------------------------------------------
def test_update_matches_guardians_by_name_and_adds_new_ones(world) -> None:
    student = world.students[0]
    mother = student.guardian_links.get().guardian
    data = make_csv(
        [
            good_row(
                student.student_number,
                guardian1_first_name=mother.first_name.upper(),
                guardian1_last_name=mother.last_name,
                guardian1_email="new-address@example.org",
                guardian1_relationship="mother",
                guardian2_first_name="Grace",
                guardian2_last_name="Hopper",
                guardian2_relationship="grandparent",
                guardian2_primary="no",
                guardian2_can_pick_up="no",
            )
        ]
    )

    plan = student_import_parse(school=world.school, data=data)
    assert plan.errors == [] and (plan.creates, plan.updates) == (0, 1)
    result = student_import_apply(school=world.school, plan=plan, actor=None)

    assert (result.guardians_created, result.guardians_updated) == (1, 1)
    mother.refresh_from_db()
    assert mother.email == "new-address@example.org"
    assert mother.first_name == mother.first_name.upper()
    links = {link.guardian.last_name: link for link in student.guardian_links.all()}
    assert set(links) == {mother.last_name, "Hopper"}
    assert links["Hopper"].relationship == "grandparent"
    assert links["Hopper"].can_pick_up is False


def test_shared_guardian_given_different_details_is_reported(world) -> None:
    first, second = world.students[0], world.students[1]
    shared = GuardianFactory(school=world.school, first_name="Sam", last_name="Shared")
    for student in (first, second):
        StudentGuardianFactory(
            school=world.school, student=student, guardian=shared, is_primary=False
        )
    base = {"guardian1_first_name": "Sam", "guardian1_last_name": "Shared"}
    data = make_csv(
        [
            good_row(first.student_number, guardian1_email="a@example.org", **base),
            good_row(second.student_number, guardian1_email="b@example.org", **base),
        ]
    )
    plan = student_import_parse(school=world.school, data=data)
    assert problems(plan) == {(3, "guardian1_first_name")}
    assert "line 2" in plan.errors[0].message


# ---------------------------------------------------------------------------------------------
# The apply: all or nothing
# ---------------------------------------------------------------------------------------------
def test_number_taken_between_check_and_apply_stops_the_whole_import(world) -> None:
    updated = world.students[0]
    data = make_csv(
        [
            good_row("NEW-1"),
            good_row(updated.student_number, first_name="Changed"),
            good_row("NEW-2"),
        ]
    )
    plan = student_import_parse(school=world.school, data=data)
    assert plan.ok and (plan.creates, plan.updates) == (2, 1)
    StudentFactory(school=world.school, student_number="NEW-2")  # someone else, meanwhile
    before = counts()

    with pytest.raises(ImportFailed, match="NEW-2") as failure:
        student_import_apply(school=world.school, plan=plan, actor=None)

    assert "line 4" in str(failure.value)
    assert counts() == before
    assert not Student.objects.filter(student_number="NEW-1").exists()
    updated.refresh_from_db()
    assert updated.first_name != "Changed"
    assert not AuditEvent.objects.filter(action="import").exists()


def test_database_refusal_rolls_back_everything_and_names_the_student(world) -> None:
    plan = student_import_parse(
        school=world.school,
        data=make_csv(
            [
                good_row("NEW-1"),
                good_row("NEW-2"),
                good_row(world.students[0].student_number, first_name="Changed"),
            ]
        ),
    )
    assert plan.ok
    # A duplicate the dry run would have refused: only the unique constraint can stop it now,
    # as it would stop a concurrent import inserting the same new number.
    plan.rows.append(copy.deepcopy(plan.rows[1]))
    before = counts()

    with pytest.raises(ImportFailed, match="Student number NEW-2 was added"):
        student_import_apply(school=world.school, plan=plan, actor=None)

    assert counts() == before
    assert Student.objects.get(pk=world.students[0].pk).first_name != "Changed"


def test_deferred_foreign_key_violation_is_reported_inside_apply(world) -> None:
    ninth = GradeLevelFactory(school=world.school, name="Grade 9", order=9)
    plan = student_import_parse(
        school=world.school, data=make_csv([good_row("NEW-1", grade_level="Grade 9")])
    )
    assert plan.ok
    GradeLevel.objects.filter(pk=ninth.pk).delete()  # removed between check and apply
    before = counts()

    with pytest.raises(ImportFailed, match="nothing was saved"):
        student_import_apply(school=world.school, plan=plan, actor=None)

    assert counts() == before


def test_plan_for_another_school_is_refused(world, other_world) -> None:
    plan = student_import_parse(school=world.school, data=make_csv([good_row("NEW-1")]))
    with pytest.raises(ValueError, match="another school"):
        student_import_apply(school=other_world.school, plan=plan, actor=None)
    assert not Student.objects.filter(student_number="NEW-1").exists()


# ---------------------------------------------------------------------------------------------
# Queries do not grow per row
# ---------------------------------------------------------------------------------------------
def school_with_students(code: str, n: int):
    school = SchoolFactory(name=f"{code} School", code=code)
    GradeLevelFactory(school=school, name="Grade 7", order=7)
    for i in range(n):
        StudentGuardianFactory(
            school=school, student=StudentFactory(school=school, student_number=f"E-{i:03d}")
        )
    return school


def import_queries(code: str, rows: int) -> int:
    school = school_with_students(code, rows // 2)
    existing = rows_of(export(school))
    for row in existing:
        row["first_name"] += " Changed"
        row["guardian1_email"] = "changed@example.org"
        row["guardian2_first_name"], row["guardian2_last_name"] = "Second", "Guardian"
        row["guardian2_relationship"] = "father"
    new = [good_row(f"N-{i:03d}") for i in range(rows - len(existing))]
    data = make_csv(existing + new)
    with CaptureQueriesContext(connection) as queries:
        plan = student_import_parse(school=school, data=data)
        result = student_import_apply(school=school, plan=plan, actor=None)
    assert plan.errors == []
    assert (result.created, result.updated) == (rows - rows // 2, rows // 2)
    assert result.guardians_updated == rows // 2
    assert result.guardians_created == rows  # one per new student, one second per update
    return len(queries)


def test_import_queries_do_not_grow_with_the_rows(world) -> None:
    assert import_queries("ten", 10) == import_queries("sixty", 60)


def test_export_queries_do_not_grow_with_the_rows(world) -> None:
    small, large = school_with_students("ten", 10), school_with_students("sixty", 60)
    with CaptureQueriesContext(connection) as small_queries:
        assert (
            student_csv_export(students=Student.objects.for_school(small), out=io.StringIO()) == 10
        )
    with CaptureQueriesContext(connection) as large_queries:
        assert (
            student_csv_export(students=Student.objects.for_school(large), out=io.StringIO()) == 60
        )
    assert len(small_queries) == len(large_queries) <= 3
