"""Staff pages for documents. Thin: parse the request, call one selector or service, render.

Every object is looked up through `request.access`, so a document of another school, or of
a student outside a teacher's classes, answers 404 as if it did not exist. Downloads go only
through `version_download`, which checks role and school, writes the access entry and hands
out a short-lived link; the local-disk link comes back to `serve`, which checks the signed
token (expiry, tampering, user and school) before sending a byte.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import Form
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from audit.refusals import NOT_ALLOWED, access_refused_record
from audit.services import audit_record
from students.models import Student
from students.tenancy import SchoolAccess
from students.views import school_view

from . import selectors, services
from .forms import DocumentUploadForm, VersionUploadForm
from .models import Document, DocumentVersion
from .sealing import SealingUnavailable
from .storage import (
    ContentMissing,
    StorageUnavailable,
    attachment_disposition,
    cloud_url,
    document_store,
    token_read,
)
from .uploads import upload_refusal


def _add_errors(form: Form, exc: ValidationError, field: str = "file") -> None:
    """Show a service's refusal on the form: field errors where the form has the field,
    everything else next to the file, which is what the user will change."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else field, errors)
    else:
        form.add_error(field, exc)


def _upload_cut_off(request: HttpRequest, form: Form) -> bool:
    refusal = upload_refusal(request)
    if refusal:
        form.add_error("file", refusal)
        return True
    return False


def _upload_document(
    request: HttpRequest, access: SchoolAccess, student: Student | None
) -> tuple[DocumentUploadForm, Document | None]:
    form = DocumentUploadForm(request.POST, request.FILES)
    if _upload_cut_off(request, form) or not form.is_valid():
        return form, None
    data = form.cleaned_data
    try:
        document = services.document_create(
            school=access.school,
            student=student,
            title=data["title"],
            category=data["category"],
            sensitive=data["sensitive"],
            file=data["file"],
            comment=data["comment"],
            actor=request.user,
        )
    except ValidationError as exc:
        _add_errors(form, exc)
    except (StorageUnavailable, SealingUnavailable) as exc:
        form.add_error(None, str(exc))
    else:
        return form, document
    return form, None


@require_http_methods(["GET", "POST"])
@school_view("files.add_document")
def student_document_upload(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    student = get_object_or_404(access.students(), pk=pk)
    form = DocumentUploadForm()
    if request.method == "POST":
        form, document = _upload_document(request, access, student)
        if document is not None:
            messages.success(request, f"“{document.title}” was uploaded.")
            return redirect("students:student_detail", pk=student.pk)
    return render(request, "files/document_upload.html", {"form": form, "student": student})


@require_http_methods(["GET", "POST"])
@school_view("files.view_document")
def school_documents(request: HttpRequest, access: SchoolAccess) -> HttpResponse:
    """The school's own documents (policies, handbooks), attached to no student."""
    can_upload = access.has_perm("files.add_document")
    form = DocumentUploadForm()
    if request.method == "POST":
        if not can_upload:
            raise PermissionDenied("Your role does not allow this.")
        form, document = _upload_document(request, access, None)
        if document is not None:
            messages.success(request, f"“{document.title}” was uploaded.")
            return redirect("files:school_documents")
    documents = selectors.school_documents_list(access=access)
    return render(
        request,
        "files/school_documents.html",
        {"documents": documents, "form": form, "can_upload": can_upload},
    )


@school_view("files.view_document")
def document_detail(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    """The version history: who uploaded what, when, how large; download or restore any."""
    try:
        history = selectors.document_history_get(access=access, document_id=pk)
    except Document.DoesNotExist:
        raise Http404("No such document.") from None
    # A read of a student's document (its title, versions, uploaders) is a disclosure too.
    audit_record(actor=request.user, action="document_view", target=history.document)
    return render(request, "files/document_detail.html", _detail_context(access, history))


def _detail_context(
    access: SchoolAccess, history: selectors.DocumentHistory, form: Form | None = None
) -> dict[str, Any]:
    return {
        "document": history.document,
        "versions": history.versions,
        "form": form or VersionUploadForm(),
        "can_upload": access.has_perm("files.add_documentversion"),
        "can_delete": access.has_perm("files.delete_document"),
    }


@require_http_methods(["GET", "POST"])
@school_view("files.add_documentversion")
def version_upload(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    try:
        history = selectors.document_history_get(access=access, document_id=pk)
    except Document.DoesNotExist:
        raise Http404("No such document.") from None
    if request.method != "POST":
        return render(request, "files/document_detail.html", _detail_context(access, history))
    form = VersionUploadForm(request.POST, request.FILES)
    if not _upload_cut_off(request, form) and form.is_valid():
        try:
            version = services.document_version_create(
                document=history.document,
                file=form.cleaned_data["file"],
                comment=form.cleaned_data["comment"],
                actor=request.user,
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        except (StorageUnavailable, SealingUnavailable) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Version {version.number} was uploaded.")
            return redirect("files:document_detail", pk=history.document.pk)
    return render(request, "files/document_detail.html", _detail_context(access, history, form))


@require_http_methods(["GET", "POST"])
@school_view("files.add_documentversion")
def version_restore(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST makes the version current again as a new version."""
    try:
        version = selectors.version_visible_get(access=access, version_id=pk)
    except DocumentVersion.DoesNotExist:
        raise Http404("No such version.") from None
    if request.method == "POST":
        try:
            restored = services.document_version_restore(version=version, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, f"Version {version.number} is current again as version {restored.number}."
            )
        return redirect("files:document_detail", pk=version.document_id)
    return render(request, "files/version_restore.html", {"version": version})


@require_http_methods(["GET", "POST"])
@school_view("files.delete_document")
def document_delete(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    try:
        history = selectors.document_history_get(access=access, document_id=pk)
    except Document.DoesNotExist:
        raise Http404("No such document.") from None
    document = history.document
    if request.method == "POST":
        services.document_delete(document=document, actor=request.user)
        messages.success(
            request,
            f"“{document.title}” was moved to the trash. It is deleted for good after "
            f"{settings.DOCUMENTS_RETENTION_DAYS} days.",
        )
        if document.student_id:
            return redirect("students:student_detail", pk=document.student_id)
        return redirect("files:school_documents")
    return render(request, "files/document_delete.html", {"document": document})


@school_view("files.view_document")
def version_download(request: HttpRequest, access: SchoolAccess, pk: int) -> HttpResponse:
    """Authorize, record the access, and answer with a short-lived link. The page follows
    the link at once (the browser downloads and stays here) and shows it for a retry."""
    try:
        version = selectors.version_visible_get(access=access, version_id=pk)
    except DocumentVersion.DoesNotExist:
        raise Http404("No such version.") from None
    context: dict[str, Any] = {"version": version, "document": version.document}
    try:
        link = services.document_download_link_issue(
            version=version,
            actor=request.user,  # type: ignore[arg-type]
        )
    except services.DocumentUnavailable as exc:
        return render(request, "files/download.html", {**context, "error": str(exc)}, status=409)
    except (StorageUnavailable, ContentMissing) as exc:
        message = (
            str(exc)
            if isinstance(exc, StorageUnavailable)
            else "The file's content cannot be found in storage. Tell your administrator."
        )
        return render(request, "files/download.html", {**context, "error": message}, status=503)
    return render(
        request,
        "files/download.html",
        {**context, "link": link, "ttl": settings.DOCUMENTS_URL_TTL},
    )


def _refused(
    request: HttpRequest, message: str, access: SchoolAccess | None = None
) -> HttpResponse:
    """The refusal page; with `access`, a link that is not this user's or this school's is
    written to the audit trail as a refused access (an expired link of their own is not)."""
    if access is not None:
        access_refused_record(
            request=request, reason=NOT_ALLOWED, school_id=access.school.pk, detail=message
        )
    return render(request, "files/link_refused.html", {"message": message}, status=403)


@require_GET
@school_view()
def serve(request: HttpRequest, access: SchoolAccess) -> HttpResponseBase:
    """Send locally stored content for a signed download token. The token names the version,
    the user and the school it was issued to, and expires after DOCUMENTS_URL_TTL seconds."""
    try:
        token = token_read(request.GET.get("t", ""))
    except signing.SignatureExpired:
        return _refused(
            request, "This download link has expired. Open the document and click Download again."
        )
    except signing.BadSignature:
        return _refused(request, "This download link is not valid.", access)
    if token["s"] != access.school.pk or token["u"] != request.user.pk:
        return _refused(
            request,
            "This download link was issued to someone else or for another school.",
            access,
        )
    meta = selectors.version_meta_get(version_id=token["v"])
    if meta is None or meta.school_id != token["s"]:
        return _refused(request, "This document no longer exists.")
    if not meta.downloadable:
        return _refused(request, "This document can no longer be downloaded.")
    store = document_store()
    path = store.local_path(meta.key)
    if path is None:
        # Hybrid mode: the local copy is gone (disk replaced, node rebuilt); the cloud has it.
        if store.replica is not None:
            try:
                return HttpResponseRedirect(
                    cloud_url(
                        store.replica,
                        key=meta.key,
                        filename=meta.original_name,
                        content_type=meta.content_type,
                        ttl=int(settings.DOCUMENTS_URL_TTL),
                    )
                )
            except store.errors:
                pass
        raise Http404("The file's content cannot be found.")
    response: HttpResponseBase
    prefix = settings.DOCUMENTS_X_ACCEL_REDIRECT_PREFIX
    if prefix and not meta.sealed:
        # nginx sends the file itself from its internal /protected-media/ location.
        response = HttpResponse(content_type=meta.content_type)
        response["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{meta.key}"
    else:
        response = StreamingHttpResponse(
            store.chunks(key=meta.key, sealed=meta.sealed), content_type=meta.content_type
        )
        response["Content-Length"] = str(meta.size)
    response["Content-Disposition"] = attachment_disposition(meta.original_name)
    response["Cache-Control"] = "private, no-store"
    # Should a browser render it inline anyway, an uploaded HTML or SVG cannot run script.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
