from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Field, Model
from django.db.models.constants import LOOKUP_SEP
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.pagination import Cursor, CursorPagination


class InvalidCursor(ParseError):
    status_code = 400
    default_detail = (
        "Invalid cursor: follow the `next` or `previous` link of a page as it is, "
        "or leave `cursor` out to start at the first page."
    )
    default_code = "invalid_cursor"


def _ordering_field(model: type[Model], path: str) -> Field | None:
    """The model field a cursor position is compared with (`name` or `relation__name`)."""
    field: Any = None
    for part in path.split(LOOKUP_SEP):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return None
        if field.related_model is not None:
            model = field.related_model
    return field if isinstance(field, Field) else None


class StableCursorPagination(CursorPagination):
    """Cursor pages: stable while rows are added (an offset page would shift) and cheap at
    any depth (no COUNT, no OFFSET scan).

    A cursor comes back from the client, so it is checked before it reaches a query: one
    that does not decode, or whose position is not a value of the ordering field (a forged
    `p=abc'--` against an integer id), is a 400 with a JSON error, never a 500."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Any) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:  # DRF answers an undecodable cursor with a 404
            raise InvalidCursor from exc
        if cursor is not None and cursor.position is not None:
            field = _ordering_field(self._model, self.ordering[0].lstrip("-"))
            if field is not None:
                try:
                    value = field.to_python(cursor.position)
                    field.get_prep_value(value)
                    field.run_validators(value)
                except (ValidationError, ValueError, TypeError, OverflowError) as exc:
                    raise InvalidCursor from exc
        return cursor
