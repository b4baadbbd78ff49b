"""Report cards for a whole class: a Celery job with progress, each card archived as a
document version so a reissue keeps the earlier card."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from files.models import DocumentVersion
from reportcards.models import ReportCardBatch, ReportCardDocument
from reportcards.services import batch_create
from reportcards.tasks import report_card_batch_task
from tests.conftest import build_school
from tests.helpers import running_worker
from tests.students.factories import GradeFactory


def grade_everyone(world) -> None:
    for n, pupil in enumerate(world.students):
        GradeFactory(
            school=world.school, assessment=world.assessment, student=pupil, score=Decimal(10 + n)
        )


@pytest.mark.unit
@pytest.mark.django_db
def test_batch_for_a_class_archives_a_card_per_student_and_reissues_as_versions(
    client, world, django_capture_on_commit_callbacks
) -> None:
    grade_everyone(world)
    client.force_login(world.teacher)
    url = reverse("reportcards:section", args=[world.section.pk])
    with django_capture_on_commit_callbacks(execute=True):  # eager Celery in unit tests
        response = client.post(url, {"term": world.term.pk, "scope": "section"})
    batch = ReportCardBatch.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{batch.pk}/")
    assert (batch.status, batch.total, batch.done, batch.failed) == ("done", 3, 3, 0)
    links = ReportCardDocument.objects.filter(term=world.term)
    assert links.count() == 3
    assert all(link.document.versions.count() == 1 for link in links)
    page = client.get(response["Location"])
    assert b"3</strong> of 3 cards" in page.content
    progress = client.get(reverse("reportcards:batch_progress", args=[batch.pk])).json()
    assert progress == {"status": "done", "total": 3, "done": 3, "failed": 0, "percent": 100}
    # Reissue: a second version of each card, the first one kept.
    with django_capture_on_commit_callbacks(execute=True):
        batch_create(
            school=world.school, term=world.term, section=world.section, actor=world.teacher
        )
    versions = DocumentVersion.objects.filter(document__in=[link.document for link in links])
    assert versions.count() == 6
    assert set(versions.values_list("number", flat=True)) == {1, 2}


@pytest.mark.unit
@pytest.mark.django_db
def test_transcript_covers_every_graded_term(client, world) -> None:
    grade_everyone(world)
    client.force_login(world.registrar)
    response = client.get(reverse("students:transcript", args=[world.students[0].pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    pdf = b"".join(response.streaming_content)
    assert pdf.startswith(b"%PDF")
    from io import BytesIO

    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)
    assert "Academic transcript" in text and "Mathematics" in text and "Term 1" in text


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_batch_job_runs_in_a_real_worker(live_celery, tmp_path) -> None:
    world = build_school("Batch")
    grade_everyone(world)
    batch = ReportCardBatch.objects.create(
        school=world.school, term=world.term, section=world.section, total=3
    )
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with running_worker(queue, tmp_path / "worker.log"):
        result = report_card_batch_task.apply_async(kwargs={"batch_id": batch.pk}, queue=queue)
        assert result.get(timeout=120) == "done"
    batch.refresh_from_db()
    assert (batch.status, batch.done) == ("done", 3)
    assert batch.started_at and batch.finished_at
    assert ReportCardDocument.objects.filter(term=world.term).count() == 3
