"""Checks every upload passes before a byte is stored.

The type comes from the bytes (libmagic, through python-magic), never from the browser's
Content-Type or the name alone: a renamed executable is still an executable. The name's
extension must then agree with what the bytes are, so that a file opens in the program its
name promises. Each refusal is a ValidationError whose message a member of staff can act on.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.template.defaultfilters import filesizeformat

from .models import Document

PDF = "application/pdf"
JPEG = "image/jpeg"
PNG = "image/png"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEXT = "text/plain"
CSV = "text/csv"

# What each detected type may be called, and how we name it to people.
EXTENSIONS: dict[str, frozenset[str]] = {
    PDF: frozenset({".pdf"}),
    JPEG: frozenset({".jpg", ".jpeg"}),
    PNG: frozenset({".png"}),
    DOCX: frozenset({".docx"}),
    XLSX: frozenset({".xlsx"}),
    TEXT: frozenset({".txt", ".csv"}),
    CSV: frozenset({".csv", ".txt"}),
}
TYPE_LABELS: dict[str, str] = {
    PDF: "PDF",
    JPEG: "JPEG image",
    PNG: "PNG image",
    DOCX: "Word document (.docx)",
    XLSX: "Excel workbook (.xlsx)",
    TEXT: "plain text",
    CSV: "CSV",
}

# The same, as a sentence says it: "This file is ...".
TYPE_PHRASES: dict[str, str] = {
    PDF: "a PDF",
    JPEG: "a JPEG image",
    PNG: "a PNG image",
    DOCX: "a Word document (.docx)",
    XLSX: "an Excel workbook (.xlsx)",
    TEXT: "plain text",
    CSV: "a CSV file",
}

Category = Document.Category
# Scans and photos of paper records are PDFs or images; plans and letters are also written
# in Word. Nothing that can carry script (HTML, SVG) or macros (.docm, .xlsm) is accepted.
ALLOWED_TYPES: dict[str, frozenset[str]] = {
    Category.ENROLLMENT: frozenset({PDF, JPEG, PNG}),
    Category.IDENTITY: frozenset({PDF, JPEG, PNG}),
    Category.MEDICAL: frozenset({PDF, JPEG, PNG}),
    Category.SPECIAL_EDUCATION: frozenset({PDF, DOCX}),
    Category.CUSTODY: frozenset({PDF}),
    Category.ACADEMIC: frozenset({PDF}),
    Category.CORRESPONDENCE: frozenset({PDF, DOCX, TEXT}),
    Category.PHOTO: frozenset({JPEG, PNG}),
    Category.OTHER: frozenset({PDF, JPEG, PNG, DOCX, XLSX, TEXT, CSV}),
}

MAX_NAME_LENGTH = 150
# Longer than any real extension: a name like "a.<400 letters>" has a long stem, not a type.
MAX_EXTENSION_LENGTH = 16
# Names Windows keeps for devices, whatever the extension ("CON.pdf" cannot be saved there).
WINDOWS_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in range(1, 10)}
    | {f"LPT{n}" for n in range(1, 10)}
)
_UNSAFE = re.compile(r"[^\w\-. ()+,&'@]+", re.UNICODE)
_SPACES = re.compile(r"\s+")
SNIFF_BYTES = 1024 * 1024  # what libmagic looks at for Office formats' zip directory


@dataclass(frozen=True)
class CheckedUpload:
    name: str
    content_type: str
    size: int
    sha256: str


def sanitize_name(raw: str) -> str:
    """A safe display and download name: the last path component only, no control or
    shell-special characters, no leading or trailing dots, not a name Windows reserves, at
    most MAX_NAME_LENGTH characters (the extension kept when the name is shortened)."""
    name = unicodedata.normalize("NFKC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    name = _UNSAFE.sub("_", name)
    name = _SPACES.sub(" ", name).strip(" .")
    stem, ext = os.path.splitext(name)
    if len(ext) > MAX_EXTENSION_LENGTH:
        stem, ext = name, ""
    if stem.split(".")[0].strip(" ").upper() in WINDOWS_RESERVED_NAMES:
        stem = "_" + stem
    # Shortening may leave a trailing dot or space, which Windows drops from a saved name.
    stem = stem[: MAX_NAME_LENGTH - len(ext)].rstrip(" .")
    name = stem + ext
    if not stem or name in {".", ".."}:
        raise ValidationError(
            "The file name is not usable. Rename the file (for example report.pdf) and try again.",
            code="bad_name",
        )
    return name


def sniff_type(file: File) -> str:
    """The content type libmagic reads from the file's first bytes."""
    import magic

    path = getattr(file, "temporary_file_path", None)
    if callable(path):
        return str(magic.from_file(path(), mime=True))
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    return str(magic.from_buffer(head, mime=True))


def file_sha256(file: File) -> str:
    """The digest the upload handler computed while streaming, else one pass over the file."""
    known = getattr(file, "sha256", None)
    if known:
        return str(known)
    digest = hashlib.sha256()
    file.seek(0)
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


def _allowed_labels(types: frozenset[str]) -> str:
    labels = sorted(TYPE_LABELS[t] for t in types if t != CSV or TEXT not in types)
    return ", ".join(labels[:-1]) + f" or {labels[-1]}" if len(labels) > 1 else labels[0]


def check_upload(*, file: File, category: str) -> CheckedUpload:
    """Validate an upload for a document category; raise ValidationError saying what to fix."""
    if category not in ALLOWED_TYPES:
        raise ValidationError("Choose a category for the document.", code="bad_category")
    size = int(file.size or 0)
    limit = int(settings.DOCUMENTS_MAX_UPLOAD_BYTES)
    if size == 0:
        raise ValidationError("The file is empty.", code="empty")
    if size > limit:
        raise ValidationError(
            f"The file is {filesizeformat(size)}; the largest accepted is {filesizeformat(limit)}.",
            code="too_large",
        )
    name = sanitize_name(file.name or "")
    ext = os.path.splitext(name)[1].lower()
    if not ext:
        raise ValidationError(
            "The file name has no extension, so nobody could tell how to open it. "
            "Rename it (for example report.pdf) and try again.",
            code="no_extension",
        )
    detected = sniff_type(file)
    allowed = ALLOWED_TYPES[category]
    category_label = Category(category).label
    if detected not in allowed:
        what = TYPE_PHRASES.get(detected, f"of type {detected}")
        raise ValidationError(
            f"This file is {what}; {category_label} documents must be {_allowed_labels(allowed)}.",
            code="bad_type",
        )
    if ext not in EXTENSIONS[detected]:
        raise ValidationError(
            f"The file's content is {TYPE_LABELS[detected]} but its name ends in {ext}. "
            f"Rename it to end in {' or '.join(sorted(EXTENSIONS[detected]))}.",
            code="extension_mismatch",
        )
    return CheckedUpload(name=name, content_type=detected, size=size, sha256=file_sha256(file))
