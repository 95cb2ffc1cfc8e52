"""API middleware: oversized bodies refused with a JSON 413 before anything parses them, and
every error under the API prefixes sent as JSON, whatever produced it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from common.edge import body_too_large
from common.errors import api_error_response, error_body, is_api_path

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class ApiBodyLimitMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _refusal(self, request: HttpRequest) -> JsonResponse | None:
        if request.method not in _BODY_METHODS or not request.path.startswith("/v1/"):
            return None
        try:
            # Reading the body applies DATA_UPLOAD_MAX_MEMORY_SIZE to bodies with and without
            # Content-Length alike; DRF's parsers would otherwise read the stream unchecked.
            request.body  # noqa: B018
        except RequestDataTooBig:
            refusal = body_too_large()
            return JsonResponse(error_body(refusal.code, refusal.message), status=refusal.status_code)
        return None

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        return self._refusal(request) or self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        # Async mode: get_response is a coroutine function (checked in __init__), its result awaitable.
        return await self.get_response(request)  # type: ignore[misc]


class ApiErrorJsonMiddleware:
    """An API client gets ``{"error": {...}}`` for every error, never an HTML page.

    ``handler404``/``handler500`` answer JSON when DEBUG is off, but with DEBUG on Django answers
    with its technical pages (URL list, traceback, settings) before any handler runs, and other
    code paths answer plain text (CSRF, a disallowed host, a method Django itself refuses). This
    middleware, outside all the others but the security headers, replaces any such error response
    under the API prefixes with the JSON one for its status, keeping its headers (Allow, ...).
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    @staticmethod
    def _json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.status_code < 400 or response.streaming or not is_api_path(request.path):
            return response
        content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type == "application/json" or content_type.endswith("+json"):
            return response
        replacement = api_error_response(request, response.status_code)
        for name, value in response.items():
            if name.lower() not in ("content-type", "content-length"):
                replacement[name] = value
        replacement.cookies = response.cookies
        return replacement

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return self._json(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Async mode: get_response is a coroutine function (checked in __init__), its result awaitable.
        response = await self.get_response(request)  # type: ignore[misc]
        return self._json(request, response)
