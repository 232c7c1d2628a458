"""The service's periodic audit checkpoint: it moves the witness forward only over a verified ledger,
does nothing when nothing was appended, and reports tampering with the first bad entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import text

from integrations.audit_anchor import init_ledger
from integrations.runtime import Runtime
from integrations.settings import Settings
from integrations.witness import Checkpointer
from risk.audit import AuditKind

AT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def _append(rt: Runtime, n: int, start: int = 0) -> None:
    with rt.sessions.begin() as s:
        rt.ledger.append_many(s, [(AuditKind.VERDICT, f"dec-{i}", {"i": i}, AT) for i in range(start, start + n)])


def test_checkpoints_when_the_ledger_grew_and_refuses_a_tampered_one(tmp_path):
    rt = Runtime(Settings(home=tmp_path / "home"))
    init_ledger(rt)
    cp = Checkpointer(rt, interval=3600)
    _append(rt, 5)
    first = cp.run_once()
    assert first is not None and first.ok and first.size == 5
    witness = json.loads(rt.settings.witness_path.read_text())
    assert witness["size"] == 5 and witness["root"] == first.root
    assert cp.run_once() is None  # nothing appended: no full read of the ledger

    _append(rt, 3, start=5)
    with rt.sessions.begin() as s:
        s.execute(text("UPDATE audit_log SET payload = :p WHERE seq = 2"), {"p": '{"i":99}'})
    bad = cp.run_once()
    assert bad is not None and not bad.ok and bad.first_bad_seq == 2
    sink = [json.loads(line) for line in rt.settings.audit_sink.read_text().splitlines()]
    assert [h["size"] for h in sink] == [0, 5]  # the genesis head of `init`, then the first checkpoint's
    assert sink[-1]["root"] == first.root and sink[-1]["signature"] == witness["signature"]
    assert json.loads(rt.settings.witness_path.read_text()) == witness  # the witness never covers tampering
    assert cp.last_report is bad


def test_stop_checkpoints_what_the_last_requests_appended(tmp_path):
    rt = Runtime(Settings(home=tmp_path / "home"))
    init_ledger(rt)
    cp = Checkpointer(rt, interval=3600)
    cp.start()
    _append(rt, 4)
    cp.stop()
    assert json.loads(rt.settings.witness_path.read_text())["size"] == 4
    assert cp.runs >= 1
