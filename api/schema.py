"""OpenAPI details drf-spectacular cannot infer: how our token authenticates, and the error
answers every endpoint can give (so generated clients, and schemathesis, know them)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from .serializers import ErrorSerializer


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token an administrator created in the admin console "
            "(API tokens); send `Authorization: Bearer <token>`.",
        }


ERRORS = {
    "401": "Not authenticated, or the token is not valid, expired or revoked.",
    "403": "No role at the school, a role without this permission, or a read-only token.",
    "404": "No such object among those the caller may see, or a page cursor that is not valid.",
    "429": "Too many requests for this token; retry after the Retry-After header's seconds.",
}


class SchoolhouseAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        codes = dict(ERRORS)
        # Bodies, filters and cursors are all checked: any call may be refused with a 400.
        codes["400"] = "The request was refused; the body says why, field by field."
        for code, description in codes.items():
            if code in responses:
                continue
            if code == "400":
                body = {"type": "object", "additionalProperties": {}}
                responses[code] = {
                    "description": description,
                    "content": {"application/json": {"schema": body}},
                }
            else:
                responses[code] = self._get_response_for_code(ErrorSerializer, code)
                responses[code]["description"] = description
        return responses
