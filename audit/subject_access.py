"""Subject-access export: everything the school holds about one student, as a streamed zip.

The zip is written while it is sent (zipstream-ng): each CSV is a generator over a database
cursor (`QuerySet.iterator`), so memory stays flat whatever the child's history holds. The
documents are listed (metadata and checksums), not copied: their files are fetched through
the documents page, where each download is itself audited.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.apps import apps
from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone
from zipstream import ZipStream

from files.models import DocumentVersion
from students.models import Assessment, Guardian, Student

from .models import AuditEvent, ModelChange
from .services import Actor, audit_record

CHUNK = 1000
# Apps whose rows can point at a student (every model with a foreign key to Student).
SCHOOL_DATA_APPS = ["students", "files", "reportcards"]


def _csv_lines(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for n, row in enumerate(rows, 1):
        writer.writerow(["" if v is None else v for v in row])
        if n % 200 == 0:  # a few KB per chunk handed to the zip
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _model_csv(queryset: models.QuerySet) -> Iterator[bytes]:
    fields = [f for f in queryset.model._meta.concrete_fields]
    names = [f.attname for f in fields]
    return _csv_lines(
        names, (row for row in queryset.values_list(*names).iterator(chunk_size=CHUNK))
    )


def student_linked_models() -> list[tuple[type[models.Model], list[str]]]:
    """Every school-data model with a foreign key to Student, and those keys' names."""
    found = []
    for label in SCHOOL_DATA_APPS:
        for model in apps.get_app_config(label).get_models():
            keys = [
                f.name
                for f in model._meta.concrete_fields
                if f.is_relation and f.related_model is Student
            ]
            if keys:
                found.append((model, keys))
    return found


def _rows_about(model: type[models.Model], keys: list[str], student: Student) -> models.QuerySet:
    query = models.Q()
    for key in keys:
        query |= models.Q(**{key: student})
    return model._default_manager.filter(query).order_by("pk")


def _file_name(model: type[models.Model]) -> str:
    return f"{model._meta.app_label}_{model._meta.model_name}.csv"


def _disclosures(student: Student) -> Iterator[bytes]:
    events = (
        AuditEvent.objects.for_school(student.school_id)
        .about_student(student.pk)
        .order_by("created_at", "id")
        .values_list(
            "created_at", "actor_repr", "action", "target_type", "target_repr", "ip_address"
        )
    )
    return _csv_lines(
        ["time", "who", "action", "record type", "record", "ip address"],
        (
            (t.isoformat(), who, action, ttype, trepr, ip)
            for t, who, action, ttype, trepr, ip in events.iterator(chunk_size=CHUNK)
        ),
    )


def _changes(student: Student) -> Iterator[bytes]:
    entries = (
        ModelChange.objects.filter(school_id=student.school_id, student_id=student.pk)
        .order_by("timestamp", "id")
        .values_list(
            "timestamp",
            "actor__username",
            "action",
            "content_type__app_label",
            "content_type__model",
            "object_pk",
            "changes",
        )
    )
    labels = dict(ModelChange.Action.choices)
    return _csv_lines(
        ["time", "who", "action", "record type", "record id", "changes (field: [old, new])"],
        (
            (
                t.isoformat(),
                who or "system",
                labels.get(action, action),
                f"{app}.{model}",
                pk,
                json.dumps(changes, ensure_ascii=False, cls=DjangoJSONEncoder),
            )
            for t, who, action, app, model, pk, changes in entries.iterator(chunk_size=CHUNK)
        ),
    )


def _readme(student: Student, actor: User | None, files: list[tuple[str, str]]) -> str:
    lines = [
        f"Subject-access export: {student.first_name} {student.last_name} "
        f"({student.student_number})",
        f"School: {student.school.name}",
        f"Prepared: {timezone.now().isoformat(timespec='seconds')}"
        + (f" by {actor.get_username()}" if actor else ""),
        "",
        "Every record this school holds about the student, one file each. CSV files are",
        "UTF-8 with a header row; ids refer to rows in the other files of this export.",
        "",
    ]
    lines += [f"{name}\n    {what}" for name, what in files]
    lines += [
        "",
        "Documents are listed with their metadata and SHA-256 checksums; their content can be",
        "downloaded from the student's documents, and each download is recorded.",
    ]
    return "\n".join(lines) + "\n"


def subject_access_zip(*, student: Student, actor: Actor) -> Iterator[bytes]:
    """Record the export in the audit trail, then return the zip as a stream of bytes."""
    with transaction.atomic():
        audit_record(actor=actor, action="subject_access_export", target=student)
    stream = ZipStream(compress_type=8)  # deflate: CSV shrinks to a fraction
    listing: list[tuple[str, str]] = []

    record = {f.attname: getattr(student, f.attname) for f in Student._meta.concrete_fields}
    stream.add(
        json.dumps(record, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False),
        "student.json",
    )
    listing.append(("student.json", "The student record, every field."))

    guardians = Guardian.objects.filter(student_links__student=student).distinct().order_by("pk")
    stream.add(_model_csv(guardians), "guardians.csv")
    listing.append(("guardians.csv", "The guardians linked to the student."))

    for model, _keys in student_linked_models():
        name = _file_name(model)
        stream.add(_model_csv(_rows_about(model, _keys, student)), name)
        listing.append(
            (name, f"{str(model._meta.verbose_name_plural).capitalize()} of the student.")
        )

    # What the ids in the grades and documents files refer to.
    assessments = Assessment.objects.filter(grades__student=student).distinct().order_by("pk")
    stream.add(_model_csv(assessments), "students_assessment.csv")
    listing.append(("students_assessment.csv", "The assessments the student's grades are for."))
    versions = DocumentVersion.objects.filter(document__student=student).order_by("pk")
    stream.add(_model_csv(versions), "files_documentversion.csv")
    listing.append(
        ("files_documentversion.csv", "Every version of the student's documents (metadata).")
    )

    stream.add(_disclosures(student), "disclosures.csv")
    listing.append(("disclosures.csv", "Who viewed, downloaded or exported the record, and when."))
    stream.add(_changes(student), "record_changes.csv")
    listing.append(("record_changes.csv", "Every change to the records, old and new values."))
    user = actor if isinstance(actor, User) else None
    stream.add(_readme(student, user, listing), "README.txt")
    return iter(stream)
