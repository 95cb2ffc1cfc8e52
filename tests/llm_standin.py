"""A local stand-in for an OpenAI-compatible chat API (OpenAI, Ollama, vLLM) in tests: a real HTTP
server on 127.0.0.1 answering ``POST /v1/chat/completions`` as the judge of mode "llm" policies
asks it (runtime/llm_exceptions.py), recording every request.

Point ``VETO_LLM_BASE_URL`` at ``standin.base_url``: with ``settings`` in this process, or in the
environment of a server started as a subprocess (the stand-in runs in a thread of the test
process, so ``decide`` and ``requests`` work across that boundary too)::

    pytest_plugins = ["tests.llm_standin"]  # the llm_standin fixture

    def test_something(llm_standin, settings):
        settings.VETO_LLM_BASE_URL = llm_standin.base_url
        llm_standin.answer_with(applies=True, number=1, reasoning="the customer is VIP")
        ...
        assert llm_standin.requests[0]["json"]["messages"][1]["content"] ...

    # a live server: start_asgi_server(log_path, VETO_LLM_BASE_URL=llm_standin.base_url)
    # a key to check: with running_llm_standin(api_key="sk-1") as standin: ...

(Or the house's ``from tests.llm_standin import llm_standin  # noqa: F401`` with ``# noqa: F811``
on the tests that take it. A module that imports helpers from here too and names it in
``pytest_plugins`` calls ``pytest.register_assert_rewrite("tests.llm_standin")`` before the import,
as runtime/tests/test_llm_exceptions.py does, or pytest warns that it cannot rewrite it.)

What it answers, the last one set winning:

* ``answer_with(applies, number, reasoning)``: the model's JSON answer, as the judge asks for it;
* ``answer_raw(content)``: the assistant message's content verbatim ("not json", "ALLOW");
* ``answer_completion(body)``: the whole response body (no choices, a refusal, ...; bytes are
  sent as they are);
* ``fail(status=500)``: an HTTP error with an OpenAI-style error body;
* ``decide = function(request_json)``: per request; it returns a dict (the model's JSON
  answer), a str (the content verbatim) or a ``Reply`` (status and whole body).

``delay(seconds)`` holds every answer that long first. With ``api_key`` set, a request without
``Authorization: Bearer <api_key>`` gets 401.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """An answer in full: the HTTP status and the body (JSON-encoded, or bytes sent as they are)."""

    status: int
    body: Any


def model_answer(
    *, applies: bool, number: int | None, reasoning: str = "as the stand-in was told"
) -> dict[str, Any]:
    """The JSON object the judge asks the model for."""
    return {"exception_applies": applies, "exception_number": number, "reasoning": reasoning}


def completion(content: str | None, *, model: str = "standin", refusal: str | None = None) -> dict[str, Any]:
    """A chat completion body whose one choice says ``content``."""
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


@dataclass
class LlmStandIn:
    url: str
    api_key: str | None = None
    # A function of the request's JSON body, or None for the answer set with answer_* / fail.
    decide: Callable[[dict[str, Any]], dict[str, Any] | str | Reply] | None = None
    # Every request: method, path, headers (names lower-cased), json (the body, None if not JSON).
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _reply: dict[str, Any] | str | Reply = field(
        default_factory=lambda: model_answer(applies=False, number=None)
    )
    _delay: float = 0.0
    _closing: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        """What VETO_LLM_BASE_URL is set to."""
        return f"{self.url}/v1"

    def answer_with(
        self, *, applies: bool, number: int | None, reasoning: str = "as the stand-in was told"
    ) -> None:
        self._set(model_answer(applies=applies, number=number, reasoning=reasoning))

    def answer_raw(self, content: str) -> None:
        self._set(content)

    def answer_completion(self, body: Any) -> None:
        self._set(Reply(200, body))

    def fail(self, status: int = 500, message: str = "the stand-in was told to fail") -> None:
        self._set(Reply(status, {"error": {"message": message, "type": "server_error", "code": None}}))

    def delay(self, seconds: float) -> None:
        self._delay = seconds

    def _set(self, reply: dict[str, Any] | str | Reply) -> None:
        self.decide = None
        self._reply = reply

    def completions(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests so far."""
        with self.lock:
            return [r["json"] for r in self.requests if r["path"] == COMPLETIONS_PATH]

    def messages(self, index: int = -1) -> dict[str, str]:
        """The messages of one completion request, by role: {"system": ..., "user": ...}."""
        return {m["role"]: m["content"] for m in self.completions()[index]["messages"]}

    def reply_to(self, body: Any) -> Reply:
        chosen = self.decide(body) if self.decide is not None else self._reply
        if isinstance(chosen, Reply):
            return chosen
        content = chosen if isinstance(chosen, str) else json.dumps(chosen)
        model = body.get("model", "standin") if isinstance(body, dict) else "standin"
        return Reply(200, completion(content, model=model))


@contextmanager
def running_llm_standin(*, api_key: str | None = None) -> Iterator[LlmStandIn]:
    standin: LlmStandIn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes; without this, Nagle's algorithm and the
            # client's delayed ACK hold every answer back by some 40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, reply: Reply) -> None:
            raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            with standin.lock:
                standin.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "headers": {name.lower(): value for name, value in self.headers.items()},
                        "json": body,
                    }
                )
            if standin._delay and standin._closing.wait(standin._delay):
                return
            if (
                standin.api_key is not None
                and self.headers.get("Authorization") != f"Bearer {standin.api_key}"
            ):
                self._answer(
                    Reply(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                )
            elif self.path != COMPLETIONS_PATH:
                self._answer(Reply(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}))
            else:
                self._answer(standin.reply_to(body))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin = LlmStandIn(url=f"http://127.0.0.1:{server.server_address[1]}", api_key=api_key)
    # A short poll, so that shutting down takes a moment, not half a second per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="llm-standin", daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        standin._closing.set()  # wakes delayed answers
        server.shutdown()
        server.server_close()


@pytest.fixture
def llm_standin() -> Iterator[LlmStandIn]:
    """A running stand-in, no API key required; answers "does not apply" until told otherwise."""
    with running_llm_standin() as standin:
        yield standin
