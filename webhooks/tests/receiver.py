"""A real HTTP receiver on 127.0.0.1 for the delivery tests: a thread running http.server that
answers from a script (status, headers) and records every request it got."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    # Answers in order (status, headers); the last one repeats.
    script: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(200, {})])
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            index = min(len(self.requests) - 1, len(self.script) - 1)
            return self.script[index]


@contextmanager
def receiver(script: list[tuple[int, dict[str, str]]] | None = None) -> Iterator[Receiver]:
    state = Receiver(port=0, script=script or [(200, {})])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status, headers = state.answer()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            payload = f"answer {status}".encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
