"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for tests: scripted replies, recorded requests.

Each request to ``POST /v1/chat/completions`` (or ``/chat/completions``) takes the next scripted reply:
a plan as a tool call (:func:`tool_call`), a draft as content (:func:`content`), or an HTTP error
(:func:`error`, :func:`context_overflow`); :func:`slow` holds a reply back (a CPU model reading a long prompt). Every request's JSON body and headers are recorded; a request whose bearer key is
not the expected one gets a 401, as a real endpoint would answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    delay: float = 0.0  # seconds before answering (released early when the server stops)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1_800_000_000, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def tool_call(name: str, arguments: str | dict[str, Any]) -> Reply:
    """A reply calling ``name``; ``arguments`` as sent on the wire (a dict is JSON-encoded)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}
    return Reply(200, _completion({"content": None, "tool_calls": [call]}, "tool_calls"))


def content(text: str | dict[str, Any], finish: str = "stop") -> Reply:
    """A reply whose message content is ``text`` (a dict is JSON-encoded); ``finish="length"`` is a reply cut
    off at max_tokens."""
    return Reply(200, _completion({"content": text if isinstance(text, str) else json.dumps(text)}, finish))


def error(status: int = 500) -> Reply:
    return Reply(status, {"error": {"message": "scripted failure", "type": "server_error", "code": None}})


def context_overflow(server: str = "llama.cpp") -> Reply:
    """The HTTP 400 a server sends for a prompt longer than its context: llama.cpp's ``llama-server`` body,
    or llama-cpp-python's (OpenAI-style ``context_length_exceeded``)."""
    if server == "llama.cpp":
        return Reply(400, {"error": {"code": 400, "message": "the request exceeds the available context size, try "
                                     "increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 5012,
                                     "n_ctx": 4096}})
    return Reply(400, {"error": {"message": "Requested tokens (5012) exceed context window of 4096",
                                 "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})


def slow(reply: Reply, seconds: float) -> Reply:
    return Reply(reply.status, reply.body, delay=seconds)


@dataclass
class FakeOpenAI:
    """The server's state: the script, what it was sent, and the key it expects."""

    api_key: str
    script: deque[Reply] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)
    # a slow model on demand: while ``release`` is clear, each request sets ``held`` and waits for it
    release: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    held: threading.Event = field(default_factory=threading.Event)

    def queue(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def _next(self, req: Request) -> Reply:
        with self.lock:
            self.requests.append(req)
            if req.path not in PATHS:
                return Reply(404, {"error": {"message": f"no route {req.path}", "type": "not_found"}})
            if req.headers.get("authorization") != f"Bearer {self.api_key}":
                return Reply(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
            if not self.script:
                return Reply(500, {"error": {"message": "script exhausted", "type": "server_error"}})
            return self.script.popleft()


def _set(e: threading.Event) -> threading.Event:
    e.set()
    return e


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name; GET /v1/models, as `glassgate doctor` asks
            ok = self.path in ("/v1/models", "/models")
            out = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "me"}]}
                             if ok else {"error": {"message": f"no route {self.path}"}}).encode()
            self.send_response(200 if ok else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {"_unparseable": raw.decode("utf-8", "replace")}
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not fake.release.is_set():
                fake.held.set()
                fake.release.wait(timeout=120)
            reply = fake._next(Request(path=self.path, headers=headers, body=body))
            if reply.delay:
                fake.stopping.wait(reply.delay)
            out = json.dumps(reply.body).encode()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            pass

    return Handler


class serve:  # noqa: N801 - used as a context manager, like open()
    """Run a :class:`FakeOpenAI` on 127.0.0.1 at a free port for the ``with`` block."""

    def __init__(self, *, api_key: str):
        self.fake = FakeOpenAI(api_key=api_key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.fake))
        self.fake.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.fake.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
