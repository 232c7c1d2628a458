"""The common part of the small vendor servers on 127.0.0.1 (fake_okta, fake_entra, fake_keycloak,
fake_servicenow): a threaded HTTP server that records every request, checks its authentication, and answers
through the subclass's ``route``. ``script[METHOD]`` says how to answer the next requests of that method
instead of normally:

- ``"ok"``: normally;
- an int: that status, with an error body, without applying anything;
- ``{"status": 429, "headers": {...}}``: that status and headers, without applying anything;
- ``"timeout"``: answer nothing for ``hang_s`` seconds (the client times out), then a 503, nothing applied;
- ``"drop"``: apply the request, then close the connection without answering (the vendor applied the call,
  its answer was lost: glassgate cannot tell whether it happened).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, Any, dict[str, str]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class FakeVendor:
    hang_s = 1.0

    def __init__(self) -> None:
        self.script: defaultdict[str, deque[Any]] = defaultdict(deque)
        self.requests: list[Seen] = []
        self.problems: list[str] = []
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                fake._handle(self, "PUT")

            def do_PATCH(self) -> None:  # noqa: N802
                fake._handle(self, "PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                fake._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):  # type: ignore[no-untyped-def]
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method: str, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.method == method and (path is None or r.path == path)]

    # ------------------------------------------------------------------ for the subclasses

    def authorized(self, headers: dict[str, str], path: str) -> bool:
        raise NotImplementedError

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: Any) -> Answer:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Answer:
        return status, {"error": message}, {}

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    # ------------------------------------------------------------------ the server side

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
        data = b"" if body is None or status == 204 else json.dumps(body).encode()
        h.send_response(status)
        if data:
            h.send_header("Content-Type", "application/json")
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in h.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        query = parse_qs(url.query, keep_blank_values=True)
        path = unquote(url.path)  # as a server routes it: %40 in a login is @
        with self._lock:
            self.requests.append(Seen(method, path, query, headers, body))
            how = self.script[method].popleft() if self.script[method] else "ok"
        if not self.authorized(headers, path):
            self.problems.append(f"{method} {path}: wrong or missing authentication")
            return self._send(h, 401, {"error": "unauthorized"}, {})
        if how == "timeout":
            time.sleep(self.hang_s)
            return self._send(h, 503, {"error": "slow"}, {})
        if isinstance(how, int):
            return self._send(h, how, {"error": f"scripted {how}"}, {})
        if isinstance(how, dict):
            return self._send(h, how["status"], {"error": "scripted"}, how.get("headers", {}))
        with self._lock:
            status, out, extra = self.route(method, path, query, headers, body)
        if how == "drop":
            h.close_connection = True  # applied, and no answer: the client sees the connection close
            return None
        return self._send(h, status, out, extra)
