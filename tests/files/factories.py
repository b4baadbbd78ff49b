"""Test content and documents. Content is real: PDFs, PNGs and Word files that libmagic
recognizes, made here, so every test goes through the same sniffing as a real upload."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from files.models import Document


def pdf_bytes(text: str = "report") -> bytes:
    body = f"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Title ({text}) >>\nendobj\n"
    return (body + "trailer\n<< /Root 1 0 R >>\n%%EOF\n").encode("latin-1")


def png_bytes(seed: int = 0) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (seed % 256, 10, 20)).save(out, "PNG")
    return out.getvalue()


def docx_bytes(text: str = "plan") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("_rels/.rels", "<Relationships/>")
        z.writestr("word/document.xml", f"<w:document>{text}</w:document>")
    return out.getvalue()


def upload(name: str, content: bytes, content_type: str = "application/octet-stream") -> Any:
    return SimpleUploadedFile(name, content, content_type=content_type)


def make_document(
    world: Any,
    *,
    student: Any = "first",
    content: bytes | None = None,
    name: str = "report.pdf",
    category: str = Document.Category.ACADEMIC,
    title: str = "Report",
    sensitive: bool = False,
    actor: Any = None,
) -> Document:
    """A document uploaded through the real service (validation, storage, audit)."""
    from files.services import document_create

    return document_create(
        school=world.school,
        student=world.students[0] if student == "first" else student,
        title=title,
        category=category,
        sensitive=sensitive,
        file=upload(name, content if content is not None else pdf_bytes(title)),
        actor=actor or world.registrar,
    )


def document_for_world(world: Any) -> Document:
    """One document of the world's first student, made once (the tenancy URL walker asks
    for it for every URL and role)."""
    existing = Document.objects.filter(school=world.school, title="Walker document").first()
    return existing or make_document(world, title="Walker document")
