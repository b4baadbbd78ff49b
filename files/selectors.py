"""Reads of the documents app. Who may see which document is decided here, once, from the
request's `SchoolAccess`: the school's documents; for a teacher only those of their own
students (and the school's own); sensitive ones only for roles allowed to see them. Each
selector runs a fixed number of queries, however many documents or versions there are.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet

from students.models import Student
from students.tenancy import SchoolAccess

from .models import Document, DocumentVersion, StoredObject
from .services import version_cache_key

SENSITIVE_PERM = "files.view_sensitive_document"


def documents_visible(*, access: SchoolAccess) -> QuerySet[Document]:
    """Live documents of the user's school that this user may see. A teacher's students are
    their cached class list (`SchoolAccess.taught_student_ids`), inlined as ids rather than
    a subquery through their classes' enrolments."""
    qs = Document.objects.alive().for_school(access.school)
    if access.is_teacher:
        qs = qs.filter(Q(student__isnull=True) | Q(student_id__in=access.taught_student_ids))
    if not access.has_perm(SENSITIVE_PERM):
        qs = qs.filter(sensitive=False)
    return qs


def student_documents_list(*, access: SchoolAccess, student: Student) -> list[Document]:
    """The documents card of a student's profile (one query; empty for a student the user
    may not see)."""
    return list(
        documents_visible(access=access)
        .filter(student=student)
        .select_related("current_version", "current_version__uploaded_by")
        .order_by("-updated_at", "-id")
    )


def school_documents_list(*, access: SchoolAccess) -> list[Document]:
    """Documents of the school itself, attached to no student (one query)."""
    return list(
        documents_visible(access=access)
        .filter(student__isnull=True)
        .select_related("current_version", "current_version__uploaded_by")
        .order_by("-updated_at", "-id")
    )


@dataclass
class DocumentHistory:
    document: Document
    versions: list[DocumentVersion]


def document_history_get(*, access: SchoolAccess, document_id: int) -> DocumentHistory:
    """A document and every version with uploader, size and scan state: two queries whatever
    the number of versions. Raises Document.DoesNotExist when the user may not see it."""
    document = (
        documents_visible(access=access)
        .select_related("student", "created_by", "current_version")
        .get(pk=document_id)
    )
    versions = list(
        DocumentVersion.objects.filter(document=document)
        .select_related("uploaded_by", "stored", "restored_from")
        .order_by("-number")
    )
    return DocumentHistory(document=document, versions=versions)


def version_visible_get(*, access: SchoolAccess, version_id: int) -> DocumentVersion:
    """One version of a document the user may see; DocumentVersion.DoesNotExist otherwise."""
    return DocumentVersion.objects.select_related("document", "stored").get(
        pk=version_id, document__in=documents_visible(access=access).values("pk")
    )


@dataclass(frozen=True)
class VersionMeta:
    """What the local download endpoint needs, cached: versions never change, and the few
    things that can (trash, quarantine) drop the cache entry when they do."""

    version_id: int
    school_id: int
    key: str
    sealed: bool
    size: int
    content_type: str
    original_name: str
    downloadable: bool


def version_meta_get(*, version_id: int) -> VersionMeta | None:
    """Metadata of a version by id, from Redis when cached (no access check: callers hold a
    signed token naming the user and school it was issued to)."""
    key = version_cache_key(version_id)
    meta = cache.get(key)
    if isinstance(meta, VersionMeta):
        return meta
    version = (
        DocumentVersion.objects.select_related("document", "stored").filter(pk=version_id).first()
    )
    if version is None:
        return None
    meta = VersionMeta(
        version_id=version.pk,
        school_id=version.school_id,
        key=version.stored.key,
        sealed=version.stored.sealed,
        size=version.size,
        content_type=version.content_type,
        original_name=version.original_name,
        downloadable=(
            not version.document.is_deleted
            and version.stored.scan_status
            in (StoredObject.ScanStatus.NOT_SCANNED, StoredObject.ScanStatus.CLEAN)
        ),
    )
    cache.set(key, meta, int(settings.DOCUMENTS_METADATA_CACHE_TIMEOUT))
    return meta
