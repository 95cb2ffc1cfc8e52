"""A local stand-in for Slack in tests: the Web API methods approvals use (users.info,
chat.postMessage, chat.update) and the hooks a press's response_url points at, on 127.0.0.1,
recording every request. Point SLACK_API_BASE_URL at ``api_url`` and SLACK_RESPONSE_URL_PREFIX
at ``hooks_url``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class SlackStandIn:
    url: str
    # Slack user id -> e-mail (users.info); an id not here answers ok: false, user_not_found.
    emails: dict[str, str] = field(default_factory=dict)
    # Seconds users.info takes to answer (Slack is not always quick).
    users_info_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def hooks_url(self) -> str:
        return f"{self.url}/hooks/"

    def response_url(self, name: str = "press-1") -> str:
        return f"{self.hooks_url}actions/T9/{name}"

    def received(self, path_prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def wait_for(self, path_prefix: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(path_prefix)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} request(s) to {path_prefix} expected, got {self.received(path_prefix)}")


@contextmanager
def slack_standin() -> Iterator[SlackStandIn]:
    standin: SlackStandIn

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _record(self, body: Any) -> dict[str, Any]:
            parts = urlsplit(self.path)
            entry = {
                "method": self.command,
                "path": parts.path,
                "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                "headers": dict(self.headers),
                "json": body,
            }
            with standin.lock:
                standin.requests.append(entry)
            return entry

        def _answer(self, payload: dict[str, Any]) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            entry = self._record(None)
            if entry["path"] == "/api/users.info":
                time.sleep(standin.users_info_delay)
                email = standin.emails.get(entry["query"].get("user", ""))
                if email is None:
                    self._answer({"ok": False, "error": "user_not_found"})
                else:
                    self._answer({"ok": True, "user": {"id": entry["query"]["user"], "profile": {"email": email}}})
                return
            self._answer({"ok": False, "error": "unknown_method"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            entry = self._record(body)
            if entry["path"] == "/api/chat.postMessage":
                self._answer({"ok": True, "channel": body.get("channel"), "ts": f"{time.time():.6f}"})
            elif entry["path"] == "/api/chat.update":
                self._answer({"ok": True, "channel": body.get("channel"), "ts": body.get("ts")})
            elif entry["path"].startswith("/hooks/"):
                self._answer({"ok": True})
            else:
                self._answer({"ok": False, "error": "unknown_method"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin = SlackStandIn(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="slack-standin", daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
