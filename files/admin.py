"""Documents in the management console, scoped to the user's school like every school-owned
model (students.admin.SchoolScopedAdmin). Versions are read-only here: they are immutable,
and new ones come only through the upload pipeline (validation, storage, audit)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from students.admin import SchoolScopedAdmin, SchoolScopedInline

from . import services
from .models import Document, DocumentVersion

VERSION_FIELDS = (
    "number",
    "original_name",
    "size",
    "content_type",
    "sha256",
    "uploaded_by",
    "comment",
    "restored_from",
    "created_at",
)


class DocumentVersionInline(SchoolScopedInline):
    model = DocumentVersion
    fk_name = "document"
    extra = 0
    fields = VERSION_FIELDS
    readonly_fields = VERSION_FIELDS
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("uploaded_by", "restored_from")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(SchoolScopedAdmin):
    list_display = [
        "title",
        "student",
        "category",
        "sensitive",
        "current_version_number",
        "updated_at",
        "deleted_at",
    ]
    list_filter = ["category", "sensitive", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "student__last_name", "student__student_number"]
    list_select_related = ["student", "current_version"]
    inlines = [DocumentVersionInline]
    actions = ["move_to_trash", "take_out_of_trash"]
    # Category and sensitivity decide validation and encryption at upload time, so they are
    # fixed once a document exists; only the title can be corrected here.
    readonly_fields = (
        "student",
        "category",
        "sensitive",
        "current_version",
        "created_by",
        "created_at",
        "deleted_at",
        "deleted_by",
        "history_link",
    )
    fields = ("school", "title", *readonly_fields)

    @admin.display(description="version")
    def current_version_number(self, obj: Document) -> int | None:
        return obj.current_version.number if obj.current_version else None

    @admin.display(description="history and downloads")
    def history_link(self, obj: Document) -> str:
        if obj.pk is None or obj.is_deleted:
            return "—"
        url = reverse("files:document_detail", args=[obj.pk])
        return format_html('<a href="{}">Open the version history</a>', url)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # A document is born with its first upload, on the student's profile.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deletion is the trash (soft delete, purged after the retention period): the actions.
        return False

    @admin.action(description="Move to the trash", permissions=["change"])
    def move_to_trash(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for document in queryset.filter(deleted_at__isnull=True):
            services.document_delete(document=document, actor=request.user)
            count += 1
        messages.success(request, f"{count} document(s) moved to the trash.")

    @admin.action(description="Take out of the trash", permissions=["change"])
    def take_out_of_trash(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for document in queryset.filter(deleted_at__isnull=False):
            services.document_undelete(document=document, actor=request.user)
            count += 1
        messages.success(request, f"{count} document(s) taken out of the trash.")


@admin.register(DocumentVersion)
class DocumentVersionAdmin(SchoolScopedAdmin):
    list_display = [
        "document",
        "number",
        "original_name",
        "size_display",
        "uploaded_by",
        "created_at",
    ]
    list_select_related = ["document", "uploaded_by"]
    search_fields = ["original_name", "sha256", "document__title"]
    readonly_fields = ("school", "document", *VERSION_FIELDS, "stored")
    fields = readonly_fields

    @admin.display(description="size", ordering="size")
    def size_display(self, obj: DocumentVersion) -> str:
        return str(filesizeformat(obj.size))

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
