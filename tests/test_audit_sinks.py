"""The external sinks: the HTTP sink POSTs each signed head to a loopback endpoint that checks what it
receives; a sink that refuses stops the checkpoint before the witness moves. And `glassgate audit init`."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from typer.testing import CliRunner

from integrations.audit_anchor import HttpHeadSink
from integrations.cli import app
from integrations.settings import Settings
from risk.audit import AuditEntry, AuditHead, Ledger, LedgerError
from risk.audit_heads import HeadSigner, HeadVerifier, SignedHead
from risk.store.base import Base
from risk.store.db import make_engine, session_factory

T0 = datetime(2026, 11, 29, 10, 32, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


class _HeadLog(BaseHTTPRequestHandler):
    """POST /v1/heads with a JSON signed head; checks the method, path, content type and signature."""

    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        problems = []
        if self.path != "/v1/heads":
            problems.append(f"path {self.path}")
        if self.headers.get("Content-Type") != "application/json":
            problems.append(f"content type {self.headers.get('Content-Type')}")
        try:
            head = SignedHead.model_validate_json(body)
            if (bad := HeadVerifier(KEY.public_key()).problem(head, "posted head")) is not None:
                problems.append(bad)
            else:
                self.server.heads.append(head)
        except ValidationError as exc:
            problems.append(str(exc))
        self.server.problems.extend(problems)
        status = self.server.status if not problems else 400
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    heads: list[SignedHead]
    problems: list[str]
    status: int


@pytest.fixture
def head_log():
    srv = _Server(("127.0.0.1", 0), _HeadLog)
    srv.heads, srv.problems, srv.status = [], [], 201
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_each_checkpoint_posts_its_signed_head_and_a_refusing_sink_keeps_the_witness(head_log, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    Base.metadata.create_all(engine, tables=[AuditEntry.__table__, AuditHead.__table__])
    Session = session_factory(engine)
    sink = HttpHeadSink(f"http://127.0.0.1:{head_log.server_address[1]}/v1/heads")
    ledger = Ledger(witness_path=tmp_path / "w.json", signer=HeadSigner(KEY), verifier=HeadVerifier(KEY.public_key()),
                    sinks=[sink], clock=lambda: T0)
    with Session() as s:
        ledger.init(s, ledger_id="gen-1")
    with Session.begin() as s:
        ledger.append_many(s, [("decision", f"evt-{i}", {"i": i}, T0) for i in range(4)])
    with Session() as s:
        head = ledger.checkpoint(s)
    assert head_log.problems == []
    assert [(h.ledger_id, h.size) for h in head_log.heads] == [("gen-1", 0), ("gen-1", 4)]
    assert head_log.heads[-1].root == head.root

    head_log.status = 503
    before = ledger.witness_path.read_bytes()
    with Session.begin() as s:
        ledger.append(s, kind="decision", subject_id="evt-4", payload={}, at=T0)
    with Session() as s, pytest.raises(LedgerError, match="could not publish the tree head to the HTTP sink"):
        ledger.checkpoint(s)
    assert ledger.witness_path.read_bytes() == before  # the next checkpoint retries; the witness never runs ahead
    engine.dispose()


def _cli(home: Path, *args: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GLASSGATE_HOME", str(home))
    monkeypatch.delenv("GLASSGATE_DATABASE_URL", raising=False)
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_audit_init_creates_the_key_outside_the_home_and_refuses_twice(tmp_path, monkeypatch):
    home = tmp_path / "home"
    res = _cli(home, "audit", "verify", monkeypatch=monkeypatch)
    assert res.exit_code == 1 and "audit ledger FAILED" in res.stdout and "never initialised" in res.stdout
    res = _cli(home, "audit", "init", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    key = tmp_path / "home-audit" / "ed25519.pem"
    assert key.stat().st_mode & 0o777 == 0o600 and (tmp_path / "home-audit" / "ed25519.pem.pub").exists()
    assert "audit ledger initialised" in res.stdout and str(tmp_path / "home-audit" / "heads.jsonl") in res.stdout
    res = _cli(home, "audit", "verify", monkeypatch=monkeypatch)
    assert res.exit_code == 0 and res.stdout.startswith("audit ledger OK: 0 entries"), res.output
    assert "audit key " in res.stdout and "external sink" in res.stdout
    res = _cli(home, "audit", "init", monkeypatch=monkeypatch)
    assert res.exit_code == 2 and "already initialised" in res.output and "--adopt-current" in res.output
    assert _cli(home, "audit", "init", "--adopt-current", monkeypatch=monkeypatch).exit_code == 0


def test_settings_refuse_a_key_or_sink_inside_the_home(tmp_path):
    with pytest.raises(ValidationError, match="GLASSGATE_AUDIT_KEY_PATH .* is inside GLASSGATE_HOME"):
        Settings(home=tmp_path, audit_key_path=tmp_path / "keys" / "k.pem")
    with pytest.raises(ValidationError, match="GLASSGATE_AUDIT_SINK_PATH .* is inside GLASSGATE_HOME"):
        Settings(home=tmp_path / "h", audit_sink_path=tmp_path / "h" / "heads.jsonl")
    assert Settings(home=tmp_path / "h").audit_key == tmp_path.resolve() / "h-audit" / "ed25519.pem"
