"""The CSV import pages: check first, then all or nothing."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from students.csv_io import student_csv_export
from students.models import Student

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def exported(world) -> str:
    out = io.StringIO()
    student_csv_export(students=Student.objects.for_school(world.school), out=out)
    return out.getvalue()


def upload(client, text: str | bytes, name: str = "students.csv"):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        reverse("students:student_import"), {"file": SimpleUploadedFile(name, data, "text/csv")}
    )


def test_check_then_import(client, world) -> None:
    client.force_login(world.registrar)
    text = exported(world)
    header, *rows = text.splitlines()
    number, rest = rows[0].split(",", 1)
    new_row = f"NORTH-500,{rest}"
    checked = upload(client, "\n".join([header, *rows, new_row]) + "\n")
    plan = checked.context["plan"]
    assert plan.ok and plan.creates == 1 and plan.updates == len(rows)
    assert not Student.objects.filter(student_number="NORTH-500").exists()  # not yet
    token = checked.context["token"]
    done = client.post(reverse("students:student_import"), {"apply": "1", "token": token})
    assert done.status_code == 302
    assert Student.objects.filter(school=world.school, student_number="NORTH-500").exists()
    assert AuditEvent.objects.filter(action="import").count() == 1
    # the token is single-use
    again = client.post(
        reverse("students:student_import"), {"apply": "1", "token": token}, follow=True
    )
    assert "expired" in again.content.decode()


def test_bad_file_gets_a_report_and_changes_nothing(client, world) -> None:
    client.force_login(world.registrar)
    before = Student.objects.count()
    response = upload(
        client,
        "student_number,first_name,last_name,date_of_birth\nX-1,Jos\xe9,Diaz,2014-01-01\n".encode(
            "latin-1"
        ),
    )
    plan = response.context["plan"]
    assert not plan.ok and "UTF-8" in response.content.decode()
    assert response.context["token"] is None
    response = upload(
        client,
        "student_number,first_name,last_name,date_of_birth\n"
        "X-1,Ana,Diaz,2014-02-30\nX-2,,Diaz,2014-01-01\n",
    )
    lines = {e.line for e in response.context["plan"].errors}
    assert lines == {2, 3}
    assert Student.objects.count() == before


def test_teacher_cannot_import(client, world) -> None:
    client.force_login(world.teacher)
    assert upload(client, "x").status_code == 403
