"""Bad input: property tests (hypothesis) of the CSV import and export and of upload names.

Whatever bytes arrive, the pages answer with a page (never a 500), say what is wrong, and
write nothing unless the whole file is good; an uploaded file's stored name is always safe
(no path, no control characters, bounded, no name Windows reserves), and a refused upload
leaves no row and no stored object behind. Each example runs in a savepoint that is rolled
back, so examples do not see each other's rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from files.models import Document, DocumentVersion, StoredObject
from files.validation import MAX_NAME_LENGTH, WINDOWS_RESERVED_NAMES, sanitize_name
from students.csv_io import (
    FORMULA_TRIGGERS,
    STUDENT_CSV_COLUMNS,
    csv_cell,
    student_csv_export,
    student_import_parse,
)
from students.models import Guardian, Student, StudentGuardian
from tests.files.factories import pdf_bytes
from tests.security.conftest import table_writes, written_tables

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

# Each property runs this many examples: together about a minute on two cores.
EXAMPLES = int(os.environ.get("BAD_INPUT_EXAMPLES", "60"))
PROPERTY = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@contextmanager
def rolled_back() -> Iterator[None]:
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def counts() -> dict[str, int]:
    return {
        "students": Student.objects.count(),
        "guardians": Guardian.objects.count(),
        "links": StudentGuardian.objects.count(),
    }


# --- strategies: CSV files ----------------------------------------------------------------------
def _cell_text() -> st.SearchStrategy[str]:
    tricky = st.sampled_from(
        [
            "",
            " ",
            "=cmd|' /C calc'!A0",
            "+1",
            "-1",
            "@SUM(A1)",
            "'=quoted",
            '"',
            "a,b",
            "line\nbreak",
            "\r",
            "\t",
            "x" * 5000,  # a huge field
            "José",
            "\ufeff",
            "2014-02-30",
            "31/12/2010",
            "yes",
            "Mother",
        ]
    )
    return st.one_of(tricky, st.text(max_size=40))


_NAMES = st.one_of(
    st.sampled_from(["Ana", "José", "=cmd|' /C calc'!A0", "+1", "@me", "'quoted", "O'Neil"]),
    st.text(
        st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=30
    ),
)


@st.composite
def good_csv_rows(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A file that should import: the required columns, unique numbers (some of them those of
    the world's students, so updates), names with anything a person's name may hold."""
    columns = ["student_number", "first_name", "last_name", "date_of_birth"]
    extra = draw(
        st.lists(
            st.sampled_from(["middle_name", "preferred_name", "address"]), unique=True, max_size=3
        )
    )
    numbers = draw(
        st.lists(
            st.one_of(
                st.sampled_from(["NORTH-001", "NORTH-002"]),
                st.integers(100, 999).map(lambda n: f"HYP-{n}"),
            ),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    rows = [
        [number, draw(_NAMES), draw(_NAMES), draw(st.sampled_from(["2014-01-01", "2013-12-31"]))]
        + [draw(_NAMES) for _ in extra]
        for number in numbers
    ]
    return columns + extra, rows


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV file as a registrar might bring one: a good one; a good one with one bad row
    (partly valid); or a wild one: some columns of the export (maybe missing a required one,
    maybe unknown extras), duplicate numbers, ragged rows, odd encodings, stray BOMs."""
    mode = draw(st.sampled_from(["good", "good", "one_bad_row", "duplicate", "wild", "wild"]))
    if mode != "wild":
        columns, rows = draw(good_csv_rows())
        if mode == "one_bad_row":
            bad = draw(st.integers(0, len(rows) - 1))
            rows[bad][3] = draw(st.sampled_from(["2014-02-30", "31/12/2010", "", "=NOW()"]))
        elif mode == "duplicate":
            rows.append(list(rows[0]))
        encoding = draw(st.sampled_from(["utf-8", "utf-8-sig"]))
        delimiter = draw(st.sampled_from([",", ";"]))
    else:
        columns = draw(
            st.lists(
                st.sampled_from(STUDENT_CSV_COLUMNS + ["shoe_size", "", "Student_Number "]),
                min_size=1,
                max_size=8,
                unique=True,
            )
        )
        rows = []
        for _ in range(draw(st.integers(min_value=0, max_value=5))):
            row = [draw(_cell_text()) for _ in columns]
            if draw(st.integers(0, 3)) == 0:  # a ragged row
                row = row[: draw(st.integers(0, len(row)))] + draw(
                    st.lists(_cell_text(), max_size=2)
                )
            rows.append(row)
        encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"]))
        delimiter = draw(st.sampled_from([",", ";", "\t"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(columns)
    writer.writerows(rows)
    data = out.getvalue().encode(encoding, errors="replace")
    if mode == "wild" and draw(st.integers(0, 4)) == 0:  # a stray byte-order mark
        data = data.replace(b"\n", b"\n\xef\xbb\xbf", 1)
    return data


any_bytes = st.one_of(
    csv_files(),
    csv_files(),
    csv_files(),
    st.binary(max_size=400),
    st.binary(max_size=40).map(lambda b: b"\xef\xbb\xbf" + b),
    st.binary(max_size=40).map(lambda b: b"student_number,first_name\n" + b),
    csv_files(),
)


# --- the CSV import -----------------------------------------------------------------------------
@PROPERTY
@given(data=any_bytes)
def test_import_check_never_fails_and_never_writes(world: Any, data: bytes) -> None:
    with rolled_back():
        before = table_writes()
        plan = student_import_parse(school=world.school, data=data)
        assert not written_tables(before, table_writes()), "the dry run wrote"
    if not plan.ok:
        assert plan.errors, "a refused file must say why"
        for problem in plan.errors:
            message = str(problem)
            assert problem.message.strip() and "Traceback" not in message
            assert problem.line is None or problem.line >= 1


@PROPERTY
@given(data=any_bytes)
def test_import_page_never_500_and_all_or_nothing(client: Client, world: Any, data: bytes) -> None:
    """Through the real page: check, then apply. The apply writes every row or none, and the
    counts move by exactly what the check promised."""
    client.force_login(world.registrar)
    url = reverse("students:student_import")
    with rolled_back():
        before = counts()
        checked = client.post(url, {"file": _upload("students.csv", data)})
        assert checked.status_code == 200
        assert counts() == before, "the check wrote"
        plan = checked.context["plan"]
        token = checked.context["token"]
        event(f"check: {'ok' if plan is not None and plan.ok else 'refused'}")
        if plan is None or not plan.ok:
            assert token is None
            body = checked.content.decode()
            assert plan is None or any(str(problem.message)[:30] in body for problem in plan.errors)
            return
        applied = client.post(url, {"apply": "1", "token": token})
        assert applied.status_code in (200, 302)
        event(f"apply: {applied.status_code}")
        after = counts()
        if applied.status_code == 302:
            assert after["students"] == before["students"] + plan.creates
        else:  # refused at apply: nothing at all
            assert after == before


def _upload(name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="text/csv")


# --- the CSV export: formula injection -----------------------------------------------------------
@hsettings(max_examples=EXAMPLES * 5, deadline=None)
@given(value=st.text(max_size=30))
def test_export_cell_never_starts_a_formula_and_imports_back(value: str) -> None:
    from students.csv_io import _import_cell

    cell = csv_cell(value)
    assert not cell.startswith(FORMULA_TRIGGERS)
    # The import reads back exactly what was exported (it strips surrounding spaces of
    # cells that were not escaped, as the staff forms do).
    expected = value if cell != value else value.strip()
    assert _import_cell(cell) == expected


@PROPERTY
@given(
    first=st.one_of(
        st.sampled_from(["=cmd|' /C calc'!A0", "+SUM(1)", "@x", "-2", "\t=1"]),
        st.text(min_size=1, max_size=20),
    ),
    address=st.text(max_size=60),
)
def test_exported_file_has_no_formula_cells(
    client: Client, world: Any, first: str, address: str
) -> None:
    client.force_login(world.registrar)
    first = first.replace("\x00", "")[:100] or "x"
    with rolled_back():
        Student.objects.filter(pk=world.students[0].pk).update(
            first_name=first, address=address.replace("\x00", "")
        )
        response = client.get(reverse("students:student_export"))
        assert response.status_code == 200
        text = response.content.decode("utf-8-sig")
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            assert not cell.startswith(FORMULA_TRIGGERS), cell


def test_export_of_one_school_imports_back_unchanged(world: Any) -> None:
    """The documented round trip, with values a spreadsheet would run as formulas."""
    Student.objects.filter(pk=world.students[0].pk).update(
        first_name='=HYPERLINK("http://x")', address="+44 20 7946 0000"
    )
    out = io.StringIO()
    student_csv_export(students=Student.objects.for_school(world.school), out=out)
    plan = student_import_parse(school=world.school, data=out.getvalue().encode())
    assert plan.ok, plan.errors
    row = next(r for r in plan.rows if r.existing_student_id == world.students[0].pk)
    assert row.student_fields["first_name"] == '=HYPERLINK("http://x")'
    assert row.student_fields["address"] == "+44 20 7946 0000"


# --- upload names -------------------------------------------------------------------------------
_WINDOWS_STEMS = ["CON", "prn", "Aux", "NUL", "com1", "LPT9", "con.tar"]
names = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "../../etc/passwd",
            "..\\..\\windows\\system32\\cmd.exe",
            "/absolute/path/report.pdf",
            "C:\\Users\\x\\report.pdf",
            "report.pdf\x00.exe",
            "re\x1bport\r\n.pdf",
            ".hidden.pdf",
            "  .pdf",
            "report.pdf.",
            "report.pdf   ",
            "ｒｅｐｏｒｔ／．．／x.pdf",  # full-width: NFKC makes a slash and dots of it
            "a" * 400 + ".pdf",
            "a." + "b" * 400,
            "x." + "p" * 200 + ".pdf",
            "\u202ereversed\u202cfdp.exe",
        ]
    ),
    st.builds(
        lambda stem, ext: f"{stem}.{ext}",
        st.sampled_from(_WINDOWS_STEMS),
        st.sampled_from(["pdf", "PDF", "txt"]),
    ),
    st.builds(
        lambda parts: "/".join(parts) + ".pdf", st.lists(st.sampled_from(["..", ".", "a", ""]))
    ),
)


def assert_safe_name(name: str) -> None:
    assert name and len(name) <= MAX_NAME_LENGTH, name
    assert "/" not in name and "\\" not in name, name
    assert all(ch.isprintable() for ch in name), name
    assert all(unicodedata.category(ch) != "Cf" for ch in name), name  # no bidi overrides
    assert not name.startswith((".", " ")) and not name.endswith((".", " ")), name
    assert name.split(".")[0].upper() not in WINDOWS_RESERVED_NAMES, name


@hsettings(max_examples=EXAMPLES * 10, deadline=None)
@given(raw=names)
def test_sanitized_name_is_always_safe(raw: str) -> None:
    try:
        name = sanitize_name(raw)
    except ValidationError as exc:
        assert exc.code == "bad_name"
        return
    assert_safe_name(name)
    assert sanitize_name(name) == name  # stable: sanitizing twice changes nothing


def _multipart(fields: dict[str, str], file_name: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body whose file name goes as sent (RFC 2231 `filename*`, so slashes,
    quotes and control characters reach the server; the test client would strip paths)."""
    boundary = "----schoolhouse-fuzz-boundary"
    parts = []
    for key, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    quoted = urllib.parse.quote(file_name, safe="")
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f"filename*=UTF-8''{quoted}\r\nContent-Type: application/pdf\r\n\r\n"
        ).encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _stored_files() -> set[Path]:
    root = Path(settings.DOCUMENTS_LOCAL_ROOT)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _left_behind(before: set[Path], content: bytes) -> list[Path]:
    """Files that appeared since `before` and belong to this upload: its content-addressed
    object, or anything that is not a finished object (a temporary or partial file). The
    other xdist worker shares the media folder, and may store its own documents meanwhile."""
    digest = hashlib.sha256(content).hexdigest()
    return [
        p
        for p in _stored_files() - before
        if p.name == digest or not re.fullmatch(r"[0-9a-f]{64}", p.name)
    ]


@PROPERTY
@given(raw=names)
def test_upload_page_stores_a_safe_name_or_nothing(client: Client, world: Any, raw: str) -> None:
    client.force_login(world.registrar)
    url = reverse("files:student_document_upload", args=[world.students[0].pk])
    content = pdf_bytes(f"fuzz {len(raw)}")
    body, content_type = _multipart(
        {"title": "", "category": Document.Category.ACADEMIC, "comment": ""}, raw, content
    )
    with rolled_back():
        rows_before = (Document.objects.count(), DocumentVersion.objects.count())
        objects_before = StoredObject.objects.count()
        files_before = _stored_files()
        response = client.generic("POST", url, body, content_type=content_type)
        assert response.status_code in (200, 302)
        event(f"upload: {response.status_code}")
        if response.status_code == 302:
            version = DocumentVersion.objects.order_by("-pk").first()
            assert version is not None
            assert_safe_name(version.original_name)
            assert version.document.title.strip()
        else:
            assert (Document.objects.count(), DocumentVersion.objects.count()) == rows_before
            assert StoredObject.objects.count() == objects_before
            assert not _left_behind(files_before, content), "a refused upload left a file behind"
            assert re.search(r"errorlist|error", response.content.decode())


def test_upload_with_a_huge_extension_is_refused_not_a_500(client: Client, world: Any) -> None:
    """Found by the property above: Django named the temporary file after the extension, and
    a 400-letter one was too long for the file system (OSError, a 500)."""
    client.force_login(world.registrar)
    url = reverse("files:student_document_upload", args=[world.students[0].pk])
    body, content_type = _multipart(
        {"title": "", "category": Document.Category.ACADEMIC, "comment": ""},
        "a." + "b" * 400,
        pdf_bytes("x"),
    )
    response = client.generic("POST", url, body, content_type=content_type)
    assert response.status_code == 200
    assert "extension" in response.content.decode()
    assert not Document.objects.filter(school=world.school, title__startswith="a").exists()
