"""OpenAPI: the API-key security scheme, the runtime gateway's routes (which DRF never sees)
documented from their pydantic models, so the schema cannot drift from what is parsed, and the
error answers every operation can give (tests/test_schemathesis.py holds the server to them)."""

from __future__ import annotations

import re
from typing import Any, Literal

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from pydantic import BaseModel

from common.edge import MAX_WAIT_SECONDS

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


def _schema_ref(model: type[BaseModel], components: dict[str, Any], *, response: bool) -> dict[str, str]:
    # A response is documented as it is sent (by alias: ``underscore_id`` goes out as ``_id``),
    # a request as it is parsed. No model is both, so one name per model is enough.
    mode: Literal["validation", "serialization"] = "serialization" if response else "validation"
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True, mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


_PATH_GROUP = re.compile(r"\(\?P<(\w+)>([^)]*)\)")


def _openapi_path(pattern: str) -> str:
    return _PATH_GROUP.sub(r"{\1}", pattern)


def _path_parameters(pattern: str) -> list[dict[str, Any]]:
    """One OpenAPI path parameter per named group of a route's pattern, constrained as it is."""
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": f"^{regex}$"}}
        for name, regex in _PATH_GROUP.findall(pattern)
    ]


_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "Long-poll: answer as soon as something changes, or after this many seconds "
    f"(0 to {MAX_WAIT_SECONDS}).",
    "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
}


def _event_stream_operation() -> dict[str, Any]:
    from common.events import EventType
    from runtime.event_stream import CURSOR_FORMAT

    types = [t.value for t in EventType]
    return {
        "description": "Server-Sent Events, one per committed event of the key's team, in order: "
        '`id: <cursor>` then `data: {"type": ..., "data": {...}}` (the event\'s ids, plus team_id, '
        "stream, sequence and occurred_at). A `: ping` comment at once and every "
        "VETO_EVENT_STREAM_HEARTBEAT_SECONDS; `retry:` once. Without Last-Event-ID the stream starts "
        "now; with it, everything after that cursor comes first. Needs the decisions:read scope.",
        "parameters": [
            {
                "name": "types",
                "in": "query",
                "required": False,
                "description": f"Comma-separated event types to send (default: all): {', '.join(types)}.",
                "schema": {"type": "string"},
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": f"Resume after this cursor: {CURSOR_FORMAT}.",
                "schema": {"type": "string", "pattern": r"^d[0-9]{1,18}p?\.e[0-9]{1,18}$"},
            },
        ],
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "responses": {
            "400": "An unknown event type in ?types=, or a Last-Event-ID that is no cursor of this "
            "team's stream (both named in the error)",
            "503": "This server holds its maximum of open streams (VETO_EVENT_STREAM_MAX_CONNECTIONS), "
            "or the database is unavailable; retry shortly",
        },
    }


# What a gateway endpoint takes and answers beyond its body models (keyed by the endpoint's name).
GATEWAY_OPERATIONS: dict[str, dict[str, Any]] = {
    "event_stream": _event_stream_operation(),
    "approval_get": {
        "parameters": [_WAIT],
        "responses": {"404": "No such approval in the key's team"},
    },
    "rule_set_active": {
        "parameters": [
            _WAIT,
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "ETags the caller holds: 304 while one of them is still the active version's.",
                "schema": {"type": "string"},
            },
        ],
        "content": {
            "application/yaml": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
        "responses": {
            "304": "The active version is the one the caller holds (If-None-Match)",
            "404": "The team has no active rule set",
        },
    },
}


def add_gateway_routes(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    from runtime.routes import runtime_routes

    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {}).setdefault(
        "ApiKey", {"type": "apiKey", "in": "header", "name": "X-Veto-API-Key"}
    )
    for route in runtime_routes:
        extra = GATEWAY_OPERATIONS.get(route.endpoint.__name__, {})
        ok: dict[str, Any] = {"description": "OK"}
        if route.response_model is not None:
            ok["content"] = {
                "application/json": {"schema": _schema_ref(route.response_model, schemas, response=True)}
            }
        else:
            ok["content"] = extra.get("content", {"application/json": {"schema": {"type": "object"}}})
        responses: dict[str, Any] = {str(route.status): ok}
        for status_code, description in extra.get("responses", {}).items():
            responses[status_code] = {"description": description}
        operation: dict[str, Any] = {
            "operationId": route.endpoint.__name__,
            "summary": (route.endpoint.__doc__ or "").strip().splitlines()[0]
            if route.endpoint.__doc__
            else "",
            "tags": ["runtime"],
            "responses": responses,
        }
        if "description" in extra:
            operation["description"] = extra["description"]
        parameters = _path_parameters(route.pattern) + list(extra.get("parameters", []))
        if parameters:
            operation["parameters"] = parameters
        if route.request_model is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(route.request_model, schemas, response=False)}
                },
            }
        operation["security"] = [{"ApiKey": []}] if route.authenticated else []
        result.setdefault("paths", {}).setdefault(_openapi_path(route.pattern), {})[route.method.lower()] = (
            operation
        )
    return add_error_responses(result)


_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
# Parameters and body fields that name an object of the caller's tenancy: another team's is a 404.
_OBJECT_REFERENCES = {"projectId", "organizationId"}


def _request_properties(operation: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for media in operation.get("requestBody", {}).get("content", {}).values():
        schema = media.get("schema", {})
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = schemas.get(ref.rsplit("/", 1)[-1], {})
        names.update(schema.get("properties", {}))
    return names


def _is_untyped(response: dict[str, Any]) -> bool:
    contents = response.get("content", {})
    return not contents or all(
        media.get("schema", {}) in ({"type": "object", "additionalProperties": {}}, {"type": "object"}, {})
        for media in contents.values()
    )


def add_error_responses(result: dict[str, Any]) -> dict[str, Any]:
    """Document the errors every API operation can answer, by what the operation is: a key
    (400 for two key headers, 401, 403, 429 lockout, 503 database away), a body (400, 413), an
    object named in the path, the query or the body (404). All of them ``{"error": {...}}``."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _METHODS or not operation.get("security"):
                continue
            parameters = operation.get("parameters", [])
            errors = {
                "400": "Invalid input (named in the error), or more than one X-Veto-API-Key header",
                "401": "Missing, unknown or revoked API key",
                "403": "The key lacks a scope this operation needs, or the team's rules refuse it",
                "429": "Too many unknown keys tried from this address: locked out for a while",
                "503": "The database is unavailable; retry shortly",
            }
            if "requestBody" in operation:
                errors["413"] = "Body over the size limit"
            names = {p["name"] for p in parameters if p.get("in") in ("query", "path")}
            names |= _request_properties(operation, schemas)
            if any(p.get("in") == "path" for p in parameters) or names & _OBJECT_REFERENCES:
                errors["404"] = "No such object in the key's team (another team's is not found either)"
            responses = operation.setdefault("responses", {})
            for status_code, description in errors.items():
                responses.setdefault(status_code, {"description": description})
            for status_code, response in responses.items():
                if not status_code.startswith(("4", "5")):
                    continue
                if _is_untyped(response):
                    response["content"] = error_content
                response["description"] = response.get("description") or errors.get(status_code, "Error")
                if status_code in ("429", "503"):
                    response.setdefault("headers", _RETRY_AFTER)
    return result
