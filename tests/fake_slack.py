"""A small Slack Web API on 127.0.0.1 for the Slack app's tests.

It answers ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral`` and ``views.open``
as Slack documents them, and is the target of the payloads' ``response_url`` (``/respond/<id>``). Every
call is recorded with its method, parsed body and Authorization header. It checks what it receives: a
wrong or missing bot token gets ``invalid_auth``, a call without its required arguments gets Slack's
error for it, and blocks that break Block Kit's limits get ``invalid_blocks`` (and are recorded as such).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.apiserver import wait_for

BOT_USER_ID, BOT_ID, TEAM_ID = "UBOTGG01", "BBOTGG01", "TGLASS001"
REQUIRED = {"chat.postMessage": ("channel",), "chat.update": ("channel", "ts"),
            "chat.postEphemeral": ("channel", "user"), "views.open": ("trigger_id", "view")}
NO_ARG_ERROR = {"channel": "channel_not_found", "ts": "message_not_found", "user": "user_not_in_channel",
                "trigger_id": "invalid_trigger_id", "view": "invalid_arguments"}


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    authorization: str | None
    ok: bool
    error: str | None = None
    ts: str | None = None  # the ts the fake gave a posted message


@dataclass
class FakeSlack:
    token: str
    base: str = ""
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def api_url(self) -> str:
        return self.base + "/api/"

    def response_url(self, key: str) -> str:
        return f"{self.base}/respond/{key}"

    def of(self, method: str, where: Callable[[Call], bool] = lambda c: True) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and where(c)]

    def wait(self, method: str, where: Callable[[Call], bool] = lambda c: True, *, count: int = 1,
             timeout: float = 60.0) -> list[Call]:
        """The calls of ``method`` matching ``where``, once there are at least ``count`` of them."""
        return wait_for(lambda: (got := self.of(method, where)) and len(got) >= count and got,  # type: ignore[arg-type]
                        timeout=timeout, what=f"{count} {method} call(s)")

    def next_ts(self) -> str:
        with self.lock:
            return f"1764400000.{next(self._ts):06d}"

    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)


def _blocks_problem(blocks: Any) -> str | None:
    """What breaks Block Kit's documented limits, or None."""
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "blocks must be a list of at most 50"
    for b in blocks:
        kind = b.get("type")
        if kind == "section":
            text = (b.get("text") or {}).get("text")
            if text is None and not b.get("fields"):
                return "a section needs text or fields"
            if text is not None and not 0 < len(text) <= 3000:
                return "section text must be 1..3000 characters"
            if len(b.get("fields") or []) > 10 or any(len(f["text"]) > 2000 for f in b.get("fields") or []):
                return "at most 10 fields of 2000 characters"
        elif kind == "actions":
            els = b.get("elements") or []
            if not 0 < len(els) <= 25:
                return "actions need 1..25 elements"
            for e in els:
                if not e.get("action_id") or len(e["text"]["text"]) > 75 or len(e.get("value", "")) > 2000:
                    return "a button needs an action_id, text up to 75 and a value up to 2000 characters"
        elif kind == "context":
            if not 0 < len(b.get("elements") or []) <= 10:
                return "context needs 1..10 elements"
        elif kind == "input":
            if not b.get("block_id") or not b.get("element", {}).get("action_id"):
                return "inputs need a block_id and an action_id"
        else:
            return f"unexpected block type {kind!r}"
    return None


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

        def _reply(self, payload: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type") or ""
            if "json" in ctype:
                body = json.loads(raw or b"{}")
            else:
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            auth = self.headers.get("Authorization")
            if self.path.startswith("/respond/"):
                fake.record(Call("respond:" + self.path.removeprefix("/respond/"), body, auth, True))
                self._reply({"ok": True})
                return
            method = self.path.removeprefix("/api/")
            if auth != f"Bearer {fake.token}":
                fake.record(Call(method, body, auth, False, "invalid_auth"))
                self._reply({"ok": False, "error": "invalid_auth"})
                return
            if method == "auth.test":
                fake.record(Call(method, body, auth, True))
                self._reply({"ok": True, "url": "https://glassgate-test.slack.com/", "team": "glassgate-test",
                             "user": "glassgate", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID})
                return
            missing = [a for a in REQUIRED.get(method, ()) if not body.get(a)]
            if method not in REQUIRED:
                error: str | None = "unknown_method"
            elif missing:
                error = NO_ARG_ERROR[missing[0]]
            elif method.startswith("chat.") and not (body.get("text") or body.get("blocks")):
                error = "no_text"
            else:
                view = body.get("view")
                view = json.loads(view) if isinstance(view, str) else view
                problem = _blocks_problem(body["blocks"]) if body.get("blocks") else None
                if view is not None:
                    problem = problem or _blocks_problem(view.get("blocks"))
                error = "invalid_blocks" if problem else None
            ts = None if error else body.get("ts") or fake.next_ts()
            fake.record(Call(method, body, auth, error is None, error, ts))
            if error:
                self._reply({"ok": False, "error": error})
            elif method == "views.open":
                self._reply({"ok": True, "view": {**body["view"], "id": "V" + str(ts).replace(".", "")}})
            elif method == "chat.postEphemeral":
                self._reply({"ok": True, "message_ts": ts})
            else:
                self._reply({"ok": True, "channel": body["channel"], "ts": ts,
                             "message": {"text": body.get("text"), "blocks": body.get("blocks"), "ts": ts,
                                         "bot_id": BOT_ID, "thread_ts": body.get("thread_ts")}})

    return Handler


@contextmanager
def fake_slack(token: str) -> Iterator[FakeSlack]:
    """Serve a fake Slack Web API on 127.0.0.1 (a free port) that accepts ``token`` as the bot token."""
    fake = FakeSlack(token=token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
