"""Template tags that let other apps' pages show documents without importing this app
(students' profile page loads these; `students` itself never imports `files`)."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def student_documents(context: template.Context, student: Any) -> dict[str, Any]:
    """The documents card's data for a student profile: the documents the user may see
    (one query) and whether they may upload."""
    from files import selectors

    request = context.get("request")
    access = getattr(request, "access", None) if request is not None else None
    if not access:
        return {"documents": [], "can_upload": False}
    return {
        "documents": selectors.student_documents_list(access=access, student=student),
        "can_upload": access.has_perm("files.add_document"),
    }
