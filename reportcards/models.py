"""Batches of report cards, and where each student's card is archived.

This app joins `students` (the grades) and `files` (the archive): neither of those may import
the other's business, so the job that needs both lives here.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from files.models import Document
from students.models import GradeLevel, SchoolOwned, Section, Student, Term


class ReportCardBatch(SchoolOwned):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    term = models.ForeignKey(Term, on_delete=models.PROTECT, related_name="+")
    section = models.ForeignKey(
        Section, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    grade_level = models.ForeignKey(
        GradeLevel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(section__isnull=False, grade_level__isnull=True)
                | Q(section__isnull=True, grade_level__isnull=False),
                name="reportcardbatch_section_or_grade",
            )
        ]

    def __str__(self) -> str:
        who = self.section or self.grade_level
        return f"Report cards {who} {self.term.name}"

    @property
    def percent(self) -> int:
        return int(100 * (self.done + self.failed) / self.total) if self.total else 0


class ReportCardDocument(SchoolOwned):
    """The archived document holding a student's card for a term: a reissue adds a version."""

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="+")
    term = models.ForeignKey(Term, on_delete=models.PROTECT, related_name="+")
    document = models.OneToOneField(Document, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["student", "term"], name="reportcarddocument_unique")
        ]

    def __str__(self) -> str:
        return f"{self.student} {self.term}"
