"""The ledger against a disk-level attacker (write access to the database and the home, not to the signing
key nor the external sink), on SQLite and PostgreSQL: each attack is caught and the failed checks named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from risk.audit import AuditCheck, AuditEntry, AuditHead, Ledger, LedgerError, leaf_hash
from risk.audit_heads import AppendOnlyFileSink, HeadSigner, HeadVerifier, SignedHead
from risk.events import canonical_json
from risk.merkle import merkle_root
from risk.store.base import Base
from risk.store.db import make_engine, session_factory

T0 = datetime(2026, 11, 29, 10, 32, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def anchored(db_url, tmp_path):
    """30 entries in a signed, sink-anchored ledger, checkpointed."""
    engine = make_engine(db_url)
    Base.metadata.create_all(engine, tables=[AuditEntry.__table__, AuditHead.__table__])
    Session = session_factory(engine)
    sink = AppendOnlyFileSink(tmp_path / "elsewhere" / "heads.jsonl")
    ledger = Ledger(witness_path=tmp_path / "home" / "witness.json", signer=HeadSigner(KEY),
                    verifier=HeadVerifier(KEY.public_key()), sinks=[sink], clock=lambda: T0)
    with Session() as s:
        ledger.init(s, ledger_id="gen-1")
    with Session.begin() as s:
        for i in range(30):
            ledger.append(s, kind="decision", subject_id=f"evt-{i:03d}", payload={"outcome": "deny", "i": i},
                          at=T0 + timedelta(seconds=i))
    with Session() as s:
        ledger.checkpoint(s)
    yield engine, Session, ledger, sink
    engine.dispose()


def _report(Session, ledger):
    with Session() as s:
        return ledger.verify(s)


def _failed(report) -> dict[AuditCheck, list[str]]:
    out: dict[AuditCheck, list[str]] = {}
    for f in report.failures:
        out.setdefault(f.check, []).append(f.problem)
    return out


def _sql(engine, sql, **params):
    with engine.begin() as c:
        c.execute(text(sql), params)


def test_a_signed_anchored_ledger_verifies_and_names_its_anchors(anchored):
    _, Session, ledger, sink = anchored
    report = _report(Session, ledger)
    assert report.ok and report.size == 30 and report.failures == []
    kid = HeadVerifier(KEY.public_key()).key_id
    assert report.anchors == [f"witness {ledger.witness_path}", f"audit key {kid}", sink.name]
    heads = [SignedHead.model_validate_json(line) for line in sink.path.read_text().splitlines()]
    assert [h.size for h in heads] == [0, 30] and {h.ledger_id for h in heads} == {"gen-1"}
    assert heads[-1].root == report.root and heads[-1].key_id == kid
    assert SignedHead.model_validate_json(ledger.witness_path.read_bytes()) == heads[-1]


def test_truncation_with_the_head_fixed_and_the_witness_deleted_is_caught_and_named(anchored):
    engine, Session, ledger, sink = anchored
    with Session() as s:
        kept = ledger.get(s, 24).leaf_hash
    _sql(engine, "DELETE FROM audit_log WHERE seq >= 25")
    _sql(engine, "UPDATE audit_head SET size = 25, last_hash = :h WHERE id = 1", h=kept)
    ledger.witness_path.unlink()
    report = _report(Session, ledger)
    assert not report.ok and report.first_bad_seq == 25
    failed = _failed(report)
    assert failed[AuditCheck.WITNESS] == [f"the witness file {ledger.witness_path} is missing: it was deleted, or "
                                          "the ledger was never initialised (`glassgate audit init`)"]
    assert failed[AuditCheck.SINK] == [f"the ledger was truncated: the newest head in the {sink.name} records 30 "
                                       "entries, the database holds 25; first missing entry is 25"]
    assert AuditCheck.ENTRIES not in failed and AuditCheck.HEAD not in failed  # invisible from inside the database
    with Session() as s, pytest.raises(LedgerError):
        ledger.checkpoint(s)  # and no checkpoint covers it up
    assert not ledger.witness_path.exists()


def test_a_rewrite_with_the_chain_head_and_witness_recomputed_is_caught_and_named(anchored):
    engine, Session, ledger, sink = anchored
    with Session() as s:
        rows = [e.model_dump() for e in ledger.entries(s)]
    # The attacker turns decision 17 into an allow, then recomputes every later leaf, the chain, the head row
    # and the witness's root. Without the key they can only keep the old signature or drop it.
    rows[17]["payload"] = {"outcome": "allow", "i": 17}
    prev = rows[16]["leaf_hash"]
    for row in rows[17:]:
        row["prev_hash"], row["payload"] = prev, canonical_json(row["payload"])
        prev = row["leaf_hash"] = leaf_hash(row)
        _sql(engine, "UPDATE audit_log SET payload = :payload, prev_hash = :prev_hash, leaf_hash = :leaf_hash "
             "WHERE seq = :seq", **row)
    _sql(engine, "UPDATE audit_head SET last_hash = :h WHERE id = 1", h=prev)
    old = SignedHead.model_validate_json(ledger.witness_path.read_bytes())
    root = merkle_root([bytes.fromhex(r["leaf_hash"]) for r in rows]).hex()
    ledger.witness_path.write_text(old.model_copy(update={"root": root, "last_hash": prev}).model_dump_json())
    assert _report(Session, Ledger(witness_path=ledger.witness_path)).ok  # fools a ledger without key or sink

    report = _report(Session, ledger)
    assert not report.ok
    failed = _failed(report)
    kid = HeadVerifier(KEY.public_key()).key_id
    assert failed[AuditCheck.SIGNATURE] == [
        f"the witness has a bad signature: it does not verify with the audit public key {kid}"]
    assert failed[AuditCheck.SINK] == [
        f"the ledger was rewritten: its first 30 entries no longer hash to the newest head in the {sink.name} root"]
    assert report.problem == failed[AuditCheck.SIGNATURE][0]

    # Dropping the signature instead is named as such.
    unsigned = old.model_copy(update={"root": root, "last_hash": prev, "signature": None})
    ledger.witness_path.write_text(unsigned.model_dump_json())
    assert _failed(_report(Session, ledger))[AuditCheck.SIGNATURE] == [
        f"the witness is not signed, but an audit public key (key {kid}) is configured"]


def test_a_bad_signature_on_an_untouched_ledger_is_named(anchored):
    _, Session, ledger, _ = anchored
    head = SignedHead.model_validate_json(ledger.witness_path.read_bytes())
    flipped = ("0" if head.signature[0] != "0" else "1") + head.signature[1:]
    ledger.witness_path.write_text(head.model_copy(update={"signature": flipped}).model_dump_json())
    report = _report(Session, ledger)
    assert not report.ok and [f.check for f in report.failures] == [AuditCheck.SIGNATURE]
    assert "the witness has a bad signature" in report.problem


def test_a_head_signed_by_another_key_is_named(anchored):
    _, Session, ledger, sink = anchored
    other = HeadVerifier(Ed25519PrivateKey.generate().public_key())
    mine = HeadVerifier(KEY.public_key()).key_id
    checked = Ledger(witness_path=ledger.witness_path, verifier=other, sinks=[sink])
    problems = [f.problem for f in _report(Session, checked).failures]
    assert problems == [
        f"the witness was signed by key {mine}, not by the configured audit key {other.key_id}",
        f"the newest head in the {sink.name} was signed by key {mine}, not by the configured audit key {other.key_id}",
    ]


def test_a_sink_that_disagrees_with_the_ledger_is_named(anchored):
    _, Session, ledger, sink = anchored
    good = SignedHead.model_validate_json(ledger.witness_path.read_bytes())
    signer = HeadSigner(KEY)
    sink.publish(signer.sign(good.model_copy(update={"root": "ab" * 32})))  # validly signed, another root
    assert _failed(_report(Session, ledger))[AuditCheck.SINK] == [
        f"the ledger was rewritten: its first 30 entries no longer hash to the newest head in the {sink.name} root"]
    # A newer generation recorded in the sink: the ledger here (and its witness) is an older one restored.
    sink.publish(signer.sign(good.model_copy(update={"ledger_id": "gen-2", "size": 0,
                                                     "root": merkle_root([]).hex()})))
    assert _failed(_report(Session, ledger))[AuditCheck.SINK] == [
        f"the {sink.name} last recorded ledger gen-2, but the witness names ledger gen-1: the ledger was "
        "replaced or re-initialised"]


def test_a_torn_last_line_in_the_sink_is_skipped(anchored):
    _, Session, ledger, sink = anchored
    with sink.path.open("a") as fh:
        fh.write('{"ledger_id": "gen-1", "size": 3')  # a crash mid-write
    assert _report(Session, ledger).ok


def test_init_refuses_twice_and_refuses_an_unwitnessed_non_empty_ledger_unless_adopted(anchored):
    _, Session, ledger, sink = anchored
    with Session() as s:
        with pytest.raises(LedgerError, match="already initialised"):
            ledger.init(s, ledger_id="gen-2")
        ledger.witness_path.unlink()
        with pytest.raises(LedgerError, match="holds 30 entries but has no witness"):
            ledger.init(s, ledger_id="gen-2")
        assert not ledger.witness_path.exists()
        head = ledger.init(s, ledger_id="gen-2", adopt=True)
    assert head.size == 30 and head.ledger_id == "gen-2"
    assert _report(Session, ledger).ok  # the sink's newest head is the adopted generation's
    assert json.loads(sink.path.read_text().splitlines()[-1])["ledger_id"] == "gen-2"


def test_a_never_initialised_ledger_fails_verification_and_refuses_to_checkpoint(db_url, tmp_path):
    engine = make_engine(db_url)
    Base.metadata.create_all(engine, tables=[AuditEntry.__table__, AuditHead.__table__])
    Session = session_factory(engine)
    ledger = Ledger(witness_path=tmp_path / "w.json")
    with Session.begin() as s:
        ledger.append(s, kind="decision", subject_id="evt-1", payload={}, at=T0)
    report = _report(Session, ledger)
    assert not report.ok and report.failures[0].check == AuditCheck.WITNESS and "missing" in report.problem
    with Session() as s, pytest.raises(LedgerError, match="refusing to checkpoint"):
        ledger.checkpoint(s)
    engine.dispose()
