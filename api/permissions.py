"""Who may call what: a role at the school (the same `request.access` as the pages), the
role's permission for the action, and a token's scope."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import ApiToken

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

# The Django permission each kind of request needs, as "view", "add", "change", "delete".
METHOD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class SchoolRolePermission(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        access = getattr(request, "access", None)
        if not access:
            self.message = "Your account has no role at this school."
            return False
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None and token.is_read_only and request.method not in SAFE_METHODS:
            self.message = "This token is read-only."
            return False
        perm = required_perm(request, view)
        if perm and not access.has_perm(perm):
            self.message = "Your role does not allow this."
            return False
        return True


def required_perm(request: Request, view: APIView) -> str | None:
    """The view's own permission for its action, else the model permission of the method."""
    fixed: str | None = getattr(view, "required_permission", None)
    if fixed:
        return fixed
    action = getattr(view, "action", None)
    action_perms: dict[str, str | dict[str, str]] = getattr(view, "action_perms", {})
    if action in action_perms:
        perm = action_perms[action]
        if isinstance(perm, str):
            return perm
        # HEAD and OPTIONS read, so they need what GET needs.
        return perm.get(request.method or "GET") or perm.get("GET")
    model = getattr(view, "perm_model", None)
    if not model or request.method is None:
        return None
    app_label, model_name = model.split(".")
    return f"{app_label}.{METHOD_ACTIONS.get(request.method, 'change')}_{model_name}"
