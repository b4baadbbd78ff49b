"""Documents kept for a student or for the school, and their immutable versions.

Three tables, each with one job:

- `StoredObject`: a piece of content stored once under its content address (sha256). Two
  uploads of the same bytes, even in different schools, share one object; its replication
  (hybrid mode) and virus-scan verdict belong to the bytes, so they live here.
- `Document`: what staff see and name: a title, a category, a sensitive flag, attached to a
  student or to the school. Soft-deleted first, purged after the retention period.
- `DocumentVersion`: one immutable upload (or restore) of a document. A restore is a new
  version pointing at the same stored object, so history is never rewritten.

Writes go through `files.services`; nothing here reaches storage.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from students.models import SchoolOwned, SchoolOwnedQuerySet, Student


class StoredObject(models.Model):
    """Content stored once under its content address; shared by every version holding it."""

    class ScanStatus(models.TextChoices):
        NOT_SCANNED = "not_scanned", "Not scanned (no scanner configured)"
        PENDING = "pending", "Waiting for the virus scan"
        CLEAN = "clean", "Clean"
        INFECTED = "infected", "Quarantined: malware found"

    # `sha256/ab/cd/<sha256>` (plain) or `sealed/ab/cd/<sha256>` (encrypted at rest on the
    # local disk). The key never comes from a user-supplied name, so no name can traverse.
    key = models.CharField(max_length=200, unique=True)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    sealed = models.BooleanField(
        default=False, help_text="Encrypted at rest on the local disk (sensitive documents)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Hybrid mode: when the cloud copy was confirmed. NULL means a copy is still owed.
    replicated_at = models.DateTimeField(null=True, blank=True)
    replication_error = models.CharField(max_length=500, blank=True)
    scan_status = models.CharField(
        max_length=20, choices=ScanStatus.choices, default=ScanStatus.NOT_SCANNED
    )
    scan_signature = models.CharField(max_length=200, blank=True)
    scanned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The replication sweep: objects still owed a cloud copy, oldest first.
            models.Index(
                fields=["created_at"],
                condition=Q(replicated_at__isnull=True),
                name="storedobject_unreplicated_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def is_quarantined(self) -> bool:
        return self.scan_status == self.ScanStatus.INFECTED


class DocumentQuerySet(SchoolOwnedQuerySet):
    def alive(self) -> DocumentQuerySet:
        """Documents not in the trash."""
        return self.filter(deleted_at__isnull=True)


class Document(SchoolOwned):
    """A named file kept for a student, or for the school when `student` is empty."""

    class Category(models.TextChoices):
        ENROLLMENT = "enrollment", "Enrollment form"
        IDENTITY = "identity", "Birth certificate or identity document"
        MEDICAL = "medical", "Medical or immunization record"
        SPECIAL_EDUCATION = "special_education", "IEP or 504 plan"
        CUSTODY = "custody", "Custody or legal order"
        ACADEMIC = "academic", "Transcript or academic report"
        CORRESPONDENCE = "correspondence", "Correspondence"
        PHOTO = "photo", "Photo"
        OTHER = "other", "Other"

    # Categories whose documents are always sensitive: health, identity, disability and
    # custody records are the ones FERPA guidance and state privacy laws single out.
    SENSITIVE_CATEGORIES = frozenset(
        {Category.IDENTITY, Category.MEDICAL, Category.SPECIAL_EDUCATION, Category.CUSTODY}
    )

    student = models.ForeignKey(
        Student, on_delete=models.PROTECT, null=True, blank=True, related_name="documents"
    )
    title = models.CharField(max_length=200)
    category = models.CharField(max_length=30, choices=Category.choices)
    sensitive = models.BooleanField(
        default=False,
        help_text="Only roles allowed to see sensitive records may see or download it.",
    )
    current_version = models.ForeignKey(
        "DocumentVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = DocumentQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["-updated_at", "-id"]
        permissions = [("view_sensitive_document", "Can see and download sensitive documents")]
        indexes = [
            # The student profile's card: one student's live documents, newest first.
            models.Index(
                fields=["student", "deleted_at", "updated_at"], name="document_student_idx"
            ),
            # The purge job: documents in the trash, oldest first.
            models.Index(
                fields=["deleted_at"],
                condition=Q(deleted_at__isnull=False),
                name="document_trash_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def clean(self) -> None:
        self._check_same_school(student=getattr(self, "student", None))
        if self.category in self.SENSITIVE_CATEGORIES and not self.sensitive:
            raise ValidationError({"sensitive": "Documents of this category are always sensitive."})


class DocumentVersion(SchoolOwned):
    """One upload or restore of a document. Never changed after it is written."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    stored = models.ForeignKey(
        StoredObject,
        to_field="key",
        db_column="storage_key",
        on_delete=models.PROTECT,
        related_name="versions",
    )
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100, help_text="Detected from the bytes.")
    original_name = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    comment = models.CharField(max_length=500, blank=True)
    restored_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["document", "number"], name="documentversion_unique"),
            models.CheckConstraint(condition=Q(size__gte=0), name="documentversion_size_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.document} v{self.number}"

    @property
    def storage_key(self) -> str:
        return str(self.stored_id)

    def save(self, *args: object, **kwargs: object) -> None:
        # Immutability: a version row is written once. History that can be edited after
        # the fact is no history, so a change must be a new version.
        if self.pk is not None and not self._state.adding:
            raise ValidationError("A document version cannot be changed once written.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def clean(self) -> None:
        self._check_same_school(document=getattr(self, "document", None))
