"""Report cards for a whole class or grade level, archived as document versions."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from audit.services import Actor, as_user, audit_record
from files.models import Document
from files.services import document_create, document_version_create
from students.models import Enrollment, GradeLevel, School, Section, Student, Term
from students.reports import report_card_data, report_card_pdf

from .models import ReportCardBatch, ReportCardDocument


def batch_students(batch: ReportCardBatch) -> QuerySet[Student]:
    """The students a batch covers: enrolled during the term in the class or grade level."""
    enrolled = Enrollment.objects.filter(
        academic_year_id=batch.term.academic_year_id, started_on__lte=batch.term.ends_on
    ).exclude(ended_on__lt=batch.term.starts_on)
    if batch.section_id:
        enrolled = enrolled.filter(section_id=batch.section_id)
    else:
        enrolled = enrolled.filter(section__grade_level_id=batch.grade_level_id)
    return Student.objects.filter(pk__in=enrolled.values("student_id")).order_by(
        "last_name", "first_name", "pk"
    )


@transaction.atomic
def batch_create(
    *,
    school: School,
    term: Term,
    actor: Actor,
    section: Section | None = None,
    grade_level: GradeLevel | None = None,
) -> ReportCardBatch:
    """Queue a batch; the worker picks it up once this transaction commits."""
    batch = ReportCardBatch(
        school=school,
        term=term,
        section=section,
        grade_level=grade_level,
        created_by=as_user(actor),
    )
    batch.full_clean()
    batch.save()
    batch.total = batch_students(batch).count()
    batch.save(update_fields=["total"])
    audit_record(
        actor=actor, action="report_cards_queue", target=batch, changes={"students": batch.total}
    )
    from .tasks import report_card_batch_task

    transaction.on_commit(lambda: report_card_batch_task.delay(batch_id=batch.pk))
    return batch


@transaction.atomic
def report_card_archive(*, student: Student, term: Term, actor: Actor) -> Document:
    """Render the student's card and store it: the first issue creates the document, each
    reissue adds a version, so every earlier card stays retrievable."""
    pdf = report_card_pdf(report_card_data(student=student, term=term))
    name = f"report-card-{student.student_number}-{term.name}-{term.academic_year.name}.pdf"
    file = ContentFile(pdf, name=name.replace(" ", "-"))
    link = (
        ReportCardDocument.objects.select_for_update()
        .filter(student=student, term=term)
        .select_related("document")
        .first()
    )
    if link is None:
        document = document_create(
            school=student.school,
            student=student,
            title=f"Report card {term.name} {term.academic_year.name}",
            category=Document.Category.ACADEMIC,
            sensitive=False,
            file=file,
            comment="Issued",
            actor=actor,
        )
        ReportCardDocument.objects.create(
            school_id=student.school_id, student=student, term=term, document=document
        )
        return document
    document_version_create(document=link.document, file=file, comment="Reissued", actor=actor)
    return link.document


def batch_run(*, batch_id: int) -> ReportCardBatch:
    """Issue every card of the batch, one transaction per student, counting progress as it
    goes so the page can show it; one student's failure does not stop the others."""
    batch = ReportCardBatch.objects.select_related("term__academic_year", "school").get(pk=batch_id)
    if batch.status in (ReportCardBatch.Status.DONE, ReportCardBatch.Status.RUNNING):
        return batch  # redelivered message: the work is done or under way
    ReportCardBatch.objects.filter(pk=batch.pk).update(
        status=ReportCardBatch.Status.RUNNING, started_at=timezone.now(), done=0, failed=0
    )
    errors = []
    for student in batch_students(batch).select_related("school"):
        try:
            report_card_archive(student=student, term=batch.term, actor=batch.created_by)
        except Exception as exc:  # noqa: BLE001 - recorded on the batch, the rest go on
            errors.append(f"{student.student_number}: {exc}")
            ReportCardBatch.objects.filter(pk=batch.pk).update(failed=F("failed") + 1)
        else:
            ReportCardBatch.objects.filter(pk=batch.pk).update(done=F("done") + 1)
    ReportCardBatch.objects.filter(pk=batch.pk).update(
        status=ReportCardBatch.Status.FAILED if errors else ReportCardBatch.Status.DONE,
        finished_at=timezone.now(),
        error="\n".join(errors)[:5000],
    )
    batch.refresh_from_db()
    return batch
