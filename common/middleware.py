"""Refuse oversized API bodies with a JSON 413 before anything parses them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from common.errors import error_body

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
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return JsonResponse(
                error_body("payload_too_large", f"request body is larger than the {limit}-byte limit"),
                status=413,
            )
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
