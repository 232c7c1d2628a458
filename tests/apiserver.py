"""Shared by the service tests: a glassgate home with a trained model and a principals file of fresh
tokens, the app served by uvicorn on 127.0.0.1 (port 0) in a thread, and a client per role."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from integrations.api import create_app
from integrations.audit_anchor import init_ledger
from integrations.principals import token_hash
from integrations.runtime import Runtime
from integrations.settings import Settings
from knowledge import POLICY_DIR
from risk.policy import load_policies
from risk.synth import World, generate_world, row_to_event
from risk.training import train_on_world

PROBLEM = "application/problem+json"
ROLES = ("analyst", "policy_owner", "ingest", "admin")
PRINCIPAL_OF = {"analyst": "ana", "policy_owner": "bob", "ingest": "gw", "admin": "dana"}


@dataclass
class Api:
    base: str
    home: Path
    tokens: dict[str, str]  # role -> bearer token
    events: list[dict[str, Any]]  # fresh, valid events not yet posted (tests take from it)
    seeded: list[dict[str, Any]]  # events posted by the fixture (in a batch)
    app: Any = None  # the FastAPI app being served, when the test built it

    def client(self, role: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {}
        tok = token if token is not None else (self.tokens[role] if role else None)
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}" if tok else "Bearer"  # "" -> the scheme without a token
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def take(self) -> dict[str, Any]:
        return self.events.pop()

    def sql(self, query: str, **params: Any) -> list[Any]:
        return sqlite_rows(self.home, query, **params)

    def counts(self) -> tuple[int, int, int, int]:
        return tuple(self.sql(f"SELECT count(*) FROM {t}")[0][0]  # type: ignore[return-value]
                     for t in ("decisions", "explanations", "verdicts", "audit_log"))


@dataclass
class Home:
    """A glassgate home: settings, a trained model and a principals file whose tokens only the test knows."""

    home: Path
    config: Path
    tokens: dict[str, str]  # role -> bearer token
    world: World
    settings_overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        merged = {**self.settings_overrides, **overrides}
        if merged.get("now") is not None:
            merged.setdefault("allow_fixed_clock", True)  # a test's fixed clock, allowed explicitly
        return Settings(home=self.home, config=self.config, database_url=None, **merged)

    def runtime(self, **overrides: Any) -> Runtime:
        return Runtime(self.settings(**overrides))

    def events(self, start: int, stop: int | None = None) -> list[dict[str, Any]]:
        rows = self.world.events.to_dict("records")
        return [row_to_event(r) for r in rows[start:stop]]


def make_home(root: Path, *, principals: list[dict[str, Any]] | None = None, users: int = 60, days: int = 10,
              seed: int = 5) -> Home:
    """Train a small model into ``root``/home and write a principals file with fresh tokens.

    ``principals`` defaults to one per role (ids from PRINCIPAL_OF); entries may carry ``slack_user_id``.
    Each entry's token is in ``Home.tokens`` under its role (the first of each role) and its id.
    """
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    entries = principals or [{"id": PRINCIPAL_OF[r], "roles": [r]} for r in ROLES]
    tokens: dict[str, str] = {}
    out = []
    for e in entries:
        tok = secrets.token_urlsafe(32)
        tokens.setdefault(e["roles"][0], tok)
        tokens[e["id"]] = tok
        out.append({**e, "token_sha256": token_hash(tok)})
    config = root / "principals.yaml"
    config.write_text(yaml.safe_dump({"principals": out}))
    world = generate_world(users=users, days=days, seed=seed)
    model, _, _ = train_on_world(world, load_policies(POLICY_DIR), test_days=3, params={"max_iter": 60})
    rt = Runtime(Settings(home=home, config=config, database_url=None))
    rt.save_model(model)
    init_ledger(rt)  # the audit key (in root/home-audit) and the first signed witness
    return Home(home=home, config=config, tokens=tokens, world=world)


@contextmanager
def serving(app_or_runtime: FastAPI | Runtime) -> Iterator[str]:
    """Serve the app on 127.0.0.1 (a free port) in a thread, with its lifespan; yield the base URL."""
    app = app_or_runtime if isinstance(app_or_runtime, FastAPI) else create_app(app_or_runtime)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(condition: Any, *, timeout: float = 30.0, what: str = "the condition") -> Any:
    """Poll ``condition()`` until it returns something truthy (returned), failing after ``timeout`` s.
    For waiting on background work the test started, never to paper over a race."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def sqlite_rows(home: Path, query: str, **params: Any) -> list[Any]:
    """Rows of ``query`` over the home's SQLite database, read through a connection of the test's own."""
    eng = create_engine(f"sqlite:///{home / 'glassgate.db'}")
    try:
        with eng.connect() as c:
            return list(c.execute(text(query), params).all())
    finally:
        eng.dispose()


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 problem document of ``r``, checked to have ``status`` and the required members."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    p = r.json()
    assert {"type", "title", "status", "detail"} <= set(p), p
    assert p["status"] == status and p["detail"]
    return p


def fields(p: dict[str, Any]) -> set[str]:
    """The field names a problem's ``errors`` name."""
    return {e["field"] for e in p["errors"]}
