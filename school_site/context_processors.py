from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def current_school(request: HttpRequest) -> dict[str, Any]:
    access = getattr(request, "access", None)
    return {"access": access if access else None}
