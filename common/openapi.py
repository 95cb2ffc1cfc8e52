"""OpenAPI: the API-key security scheme, and the runtime gateway's routes (which DRF never sees)
documented from their pydantic models, so the schema cannot drift from what is parsed."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from pydantic import BaseModel

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
            "required": ["code", "message"],
        }
    },
}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenancy.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-Veto-API-Key"}


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _openapi_path(pattern: str) -> str:
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


def add_gateway_routes(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    from veto_cloud.routing import runtime_routes

    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    components.setdefault("securitySchemes", {}).setdefault(
        "ApiKey", {"type": "apiKey", "in": "header", "name": "X-Veto-API-Key"}
    )
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for route in runtime_routes:
        responses: dict[str, Any] = {}
        if route.response_model is not None:
            responses[str(route.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": _schema_ref(route.response_model, schemas)}},
            }
        else:
            responses[str(route.status)] = {"description": "OK"}
        operation: dict[str, Any] = {
            "operationId": route.endpoint.__name__,
            "summary": (route.endpoint.__doc__ or "").strip().splitlines()[0]
            if route.endpoint.__doc__
            else "",
            "tags": ["runtime"],
            "responses": responses,
        }
        if route.request_model is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(route.request_model, schemas)}},
            }
            responses["400"] = {"description": "Malformed JSON or invalid fields", **error}
            responses["413"] = {"description": "Body over the size limit", **error}
        if route.authenticated:
            operation["security"] = [{"ApiKey": []}]
            responses["401"] = {"description": "Missing, unknown or revoked API key", **error}
            responses["403"] = {"description": "The key lacks the runtime scope", **error}
        else:
            operation["security"] = []
        result.setdefault("paths", {}).setdefault(_openapi_path(route.pattern), {})[route.method.lower()] = (
            operation
        )
    return result
