"""A small Jira Cloud on 127.0.0.1 for the ticketing adapter's tests: the comment endpoints of REST v3,
checking what it receives (method, path, basic auth, JSON content type, a valid ADF document) and
recording every request and every problem it found.

``script`` lists how to answer the next comment POSTs: "ok" (201), a status code to answer with instead,
or "drop" (store the comment, then close the connection without answering: a post whose answer was lost).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

COMMENT_PATH = re.compile(r"^/rest/api/3/issue/([A-Z][A-Z0-9_]*-[0-9]+)/comment$")
BLOCKS = {"paragraph", "heading", "rule", "bulletList", "orderedList", "codeBlock", "blockquote"}
MARKS = {"code", "strong", "em", "link", "underline"}


def adf_problems(doc: Any) -> list[str]:
    """What is wrong with an ADF comment body ``{"body": {"type": "doc", "version": 1, "content": [...]}}``."""
    if not isinstance(doc, dict) or set(doc) != {"body"}:
        return ["the request body must be an object with exactly one field, body"]
    body = doc["body"]
    if not isinstance(body, dict) or body.get("type") != "doc" or body.get("version") != 1:
        return ["body must be {type: doc, version: 1, ...}"]
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return ["body.content must be a non-empty list"]
    out = []
    for i, block in enumerate(content):
        where = f"body.content[{i}]"
        if not isinstance(block, dict) or block.get("type") not in BLOCKS:
            out.append(f"{where}: not a block node")
            continue
        if block["type"] == "heading" and not (isinstance(block.get("attrs"), dict)
                                               and block["attrs"].get("level") in range(1, 7)):
            out.append(f"{where}: a heading needs attrs.level 1..6")
        for j, inline in enumerate(block.get("content", [])):
            w = f"{where}.content[{j}]"
            if not isinstance(inline, dict) or inline.get("type") not in ("text", "hardBreak"):
                out.append(f"{w}: not an inline node")
            elif inline["type"] == "text":
                if not isinstance(inline.get("text"), str) or not inline["text"]:
                    out.append(f"{w}: a text node needs non-empty text")
                for m in inline.get("marks", []):
                    if not isinstance(m, dict) or m.get("type") not in MARKS:
                        out.append(f"{w}: unknown mark {m!r}")
    return out


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeJira:
    email: str
    token: str
    script: deque[str | int] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _next_id: int = 10000

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeJira:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def posts(self) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    # ------------------------------------------------------------------ the server side

    def _answer(self, h: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(Seen(method, url.path, {k.lower(): v for k, v in h.headers.items()}, body))
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if h.headers.get("Authorization") != expected:
            self.problems.append(f"{method} {url.path}: wrong or missing basic auth")
            return self._answer(h, 401, {"errorMessages": ["not authenticated"]})
        m = COMMENT_PATH.match(url.path)
        if m is None:
            self.problems.append(f"{method} {url.path}: not a comment path")
            return self._answer(h, 404, {"errorMessages": ["no such resource"]})
        key = m.group(1)
        if method == "GET":
            q = parse_qs(url.query)
            start, size = int(q.get("startAt", ["0"])[0]), int(q.get("maxResults", ["50"])[0])
            with self._lock:
                all_ = list(self.comments.get(key, []))
            return self._answer(h, 200, {"startAt": start, "maxResults": size, "total": len(all_),
                                         "comments": all_[start:start + size]})
        if not (h.headers.get("Content-Type") or "").startswith("application/json"):
            self.problems.append(f"POST {url.path}: Content-Type is {h.headers.get('Content-Type')!r}")
            return self._answer(h, 415, {"errorMessages": ["send JSON"]})
        bad = adf_problems(body)
        if bad:
            self.problems.extend(f"POST {url.path}: {p}" for p in bad)
            return self._answer(h, 400, {"errorMessages": bad})
        with self._lock:
            how = self.script.popleft() if self.script else "ok"
        if isinstance(how, int):
            return self._answer(h, how, {"errorMessages": [f"scripted {how}"]})
        with self._lock:
            self._next_id += 1
            comment = {"id": str(self._next_id), "body": body["body"], "author": {"emailAddress": self.email}}
            self.comments.setdefault(key, []).append(comment)
        if how == "drop":
            h.close_connection = True
            return None
        return self._answer(h, 201, comment)
