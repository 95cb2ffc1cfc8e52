"""Domain errors and their single mapping to JSON.

Domain code raises ``ApplicationError`` subclasses and never HTTP exceptions;
``api_exception_handler`` turns them (and DRF's own errors) into
``{"error": {"code", "message", "details"}}`` with the right status.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views import defaults
from django.views.debug import SafeExceptionReporterFilter
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """Base of every error domain code raises on purpose."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        # Top-level keys next to "error", where a published contract asks for them.
        self.extra = extra or {}
        if code is not None:
            self.code = code


class InvalidInput(ApplicationError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid_request"


class NotAuthenticated(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "unauthenticated"


class PermissionDenied(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class PayloadTooLarge(ApplicationError):
    """A request body over the body limit (``common.edge.body_too_large`` builds it)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class Unprocessable(ApplicationError):
    """Well-formed and understood, but refused by a rule of the domain (failing fixtures, say)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"


class ServiceUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


# Every 503 says when to come back (common/database.py's breaker probes again after this long).
RETRY_AFTER_SECONDS = 1
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable; retry shortly"


def retry_after_headers(status_code: int) -> dict[str, str]:
    return (
        {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if status_code == status.HTTP_503_SERVICE_UNAVAILABLE
        else {}
    )


def is_database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or could not answer now (down, pool exhausted, locked,
    restarting, a deadlock): retrying later may work. psycopg's own errors reach us unwrapped from
    the decision writer; PoolTimeout is a psycopg OperationalError."""
    import psycopg

    return isinstance(
        exc, (DjangoOperationalError, DjangoInterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
    )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def _first_validation_message(detail: Any, path: str = "") -> str:
    """The first message of a DRF error tree, prefixed with where it is (``arguments: ...``)."""
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        child = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
        return _first_validation_message(value, child)
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, (dict, list)):
            return _first_validation_message(first, f"{path}[0]")
        detail = first
    return f"{path}: {detail}" if path else str(detail)


def error_for_exception(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """(status, body) for an error we expect; None for anything else (a bug: let it surface)."""
    if isinstance(exc, ApplicationError):
        return exc.status_code, {**exc.extra, **error_body(exc.code, exc.message, exc.details)}
    if is_database_unavailable(exc):
        logger.warning("database.unavailable error=%r", exc)
        return status.HTTP_503_SERVICE_UNAVAILABLE, error_body(
            DatabaseUnavailable.code, DATABASE_UNAVAILABLE_MESSAGE
        )
    if isinstance(exc, Http404):
        return status.HTTP_404_NOT_FOUND, error_body("not_found", "Not found.")
    if isinstance(exc, DataError):
        # A value the database cannot store (too long, NUL, out of range): the caller's input.
        return status.HTTP_400_BAD_REQUEST, error_body(
            "invalid_request", f"a value in the request cannot be stored: {str(exc).splitlines()[0]}"
        )
    if isinstance(exc, RequestDataTooBig):
        # The gateway's and the middleware's 413, not Django's wording (common.edge builds on
        # this module, hence the late import).
        from common.edge import body_too_large

        return error_for_exception(body_too_large())
    if isinstance(exc, drf_exceptions.ValidationError):
        return status.HTTP_400_BAD_REQUEST, error_body(
            "invalid_request", _first_validation_message(exc.detail), exc.detail
        )
    if isinstance(exc, drf_exceptions.ParseError):
        return status.HTTP_400_BAD_REQUEST, error_body("malformed_json", str(exc.detail))
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return status.HTTP_401_UNAUTHORIZED, error_body("unauthenticated", str(exc.detail))
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return status.HTTP_403_FORBIDDEN, error_body("forbidden", str(exc.detail))
    if isinstance(exc, drf_exceptions.APIException):
        code = exc.default_code if isinstance(exc.default_code, str) else "error"
        return exc.status_code, error_body(code, str(exc.detail))
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler: every expected error as ``{"error": {...}}``."""
    mapped = error_for_exception(exc)
    if mapped is None:
        return None
    status_code, body = mapped
    # An error may name its own headers (``Retry-After`` of an API-key lockout, say).
    return Response(
        body, status=status_code, headers={**retry_after_headers(status_code), **getattr(exc, "headers", {})}
    )


# Paths whose errors are JSON whatever produced them: the SDK's and the admin API (/v1/), and the
# OpenAPI document (/api/). Pages elsewhere get Django's plain error pages.
API_PATH_PREFIXES = ("/v1/", "/api/")

_STATUS_ERRORS = {
    400: ("invalid_request", "bad request"),
    401: ("unauthenticated", "authentication required"),
    403: ("forbidden", "forbidden"),
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "method not allowed"),
    413: ("payload_too_large", ""),  # the message names the limit (api_error_response)
    500: ("internal_error", "internal server error"),
    503: ("unavailable", "service unavailable"),
}


def is_api_path(path: str) -> bool:
    return path.startswith(API_PATH_PREFIXES) or f"{path}/" in API_PATH_PREFIXES


def api_error_response(request: HttpRequest, status_code: int) -> JsonResponse:
    """The JSON error for a status that arrived without one (a Django error page, say)."""
    code, message = _STATUS_ERRORS.get(status_code, ("error" if status_code < 500 else "internal_error", ""))
    if status_code == 404:
        message = f"no such endpoint: {request.method} {request.path}"
    elif status_code == 413:
        from common.edge import body_too_large  # late: common.edge builds on this module

        message = body_too_large().message
    return JsonResponse(error_body(code, message or f"HTTP {status_code}"), status=status_code)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponseBase:
    """``handler404``: JSON under the API prefixes, Django's plain page elsewhere (never the URL list)."""
    if is_api_path(request.path):
        return api_error_response(request, 404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: JSON under the API prefixes, Django's plain page elsewhere."""
    if is_api_path(request.path):
        return api_error_response(request, 500)
    return defaults.server_error(request)


class SecretsHidingReporterFilter(SafeExceptionReporterFilter):
    """What DEBUG's error pages and error e-mails may show: Django's filter hides names with KEY,
    SECRET, PASS, TOKEN...; this one hides URLs and DSNs too (DATABASE_URL carries a password)."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|AUTH|COOKIE|URL|DSN|DATABASE|REDIS|BROKER", flags=re.IGNORECASE
    )
