"""The audit ledger: RFC 6962 known answers, tamper detection on SQLite and PostgreSQL, concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import text

from risk.audit import AuditEntry, AuditHead, Ledger, LedgerError, leaf_hash, merkle_root
from risk.events import canonical_json
from risk.store.base import Base
from risk.store.db import make_engine, session_factory

# RFC 6962 known answers copied from transparency-dev/merkle, testonly/constants.go
# (commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1): LeafInputs() and RootHashes(), the
# latter indexed by tree size 0..8 (size 0 is EmptyRootHash()).
LEAF_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
ROOT_HASHES = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
T0 = datetime(2026, 11, 29, 10, 32, tzinfo=UTC)
TRUNCATED = "the ledger was truncated: the {who} records 30 entries, the database holds 25; first missing entry is 25"
REWRITTEN = "the ledger was rewritten: its first 30 entries no longer hash to the witness root"


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively, as a second opinion for sizes beyond the published ones."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _reference_mth(leaves[:k]) + _reference_mth(leaves[k:])).digest()


@pytest.mark.parametrize("size", range(9))
def test_merkle_root_reproduces_rfc6962_known_answers(size):
    leaves = [_leaf(bytes.fromhex(x)) for x in LEAF_INPUTS[:size]]
    assert merkle_root(leaves).hex() == ROOT_HASHES[size]


def test_merkle_root_agrees_with_the_recursive_definition():
    leaves = [_leaf(str(i).encode()) for i in range(70)]
    for size in range(len(leaves) + 1):
        assert merkle_root(leaves[:size]) == _reference_mth(leaves[:size]), size


@pytest.fixture
def ledger_db(db_url, tmp_path):
    engine = make_engine(db_url)
    Base.metadata.create_all(engine, tables=[AuditEntry.__table__, AuditHead.__table__])
    ledger = Ledger(witness_path=tmp_path / "witness" / "head.json")
    Session = session_factory(engine)
    with Session() as s:
        ledger.init(s, ledger_id="test-ledger")  # the first (empty) witness: without it verification fails
    yield engine, Session, ledger
    engine.dispose()


def _checked(Session, ledger, n=30, start=0):
    """Append n entries in one transaction (so the head row is reused), commit, then checkpoint."""
    with Session.begin() as s:
        for i in range(start, start + n):
            payload = {"event_id": f"evt-{i:03d}", "outcome": "deny", "score": 0.5 + i / 100, "note": "Zürich"}
            ledger.append(s, kind="decision", subject_id=f"evt-{i:03d}", payload=payload, at=T0 + timedelta(seconds=i))
    with Session() as s:
        return ledger.checkpoint(s)


@pytest.fixture
def checked(ledger_db):
    """30 entries, checkpointed: the starting point of every tamper test."""
    engine, Session, ledger = ledger_db
    _checked(Session, ledger)
    return engine, Session, ledger


def _verify(Session, ledger):
    with Session() as s:
        return ledger.verify(s)


def test_append_checkpoint_verify_and_export(ledger_db):
    engine, Session, ledger = ledger_db
    head = _checked(Session, ledger)
    with Session() as s:
        entries = ledger.entries(s, limit=100)
        assert [e.seq for e in entries] == list(range(30))
        assert [e.seq for e in ledger.entries(s, after_seq=9, limit=5)] == [10, 11, 12, 13, 14]
        e17 = ledger.get(s, 17)
        assert ledger.get(s, 30) is None
    assert head.size == 30 and head.last_hash == entries[-1].leaf_hash
    assert head.root == merkle_root([bytes.fromhex(e.leaf_hash) for e in entries]).hex()
    witness = json.loads(ledger.witness_path.read_text())
    assert {k: witness[k] for k in ("size", "root", "last_hash")} == head.model_dump()
    assert witness["ledger_id"] == "test-ledger" and witness["signature"] is None  # this ledger has no key
    assert entries[0].prev_hash == "0" * 64 and all(b.prev_hash == a.leaf_hash for a, b in pairwise(entries))
    # The leaf input is exactly the canonical JSON of the entry with its payload parsed (RFC 6962 leaf prefix 0x00).
    spec = {k: getattr(e17, k) for k in ("seq", "kind", "subject_id", "at", "payload", "prev_hash")}
    assert e17.leaf_hash == hashlib.sha256(b"\x00" + canonical_json(spec).encode()).hexdigest()
    assert e17.at == "2026-11-29T10:32:17.000000Z" and e17.payload["note"] == "Zürich"
    expected = dict(ok=True, size=30, root=head.root, first_bad_seq=None, problem=None, failures=[],
                    anchors=[f"witness {ledger.witness_path}"])
    assert _verify(Session, ledger).model_dump(exclude={"checked_at"}) == expected
    # Growth past the witness is fine: the witness root must match the first 30 entries only.
    with Session.begin() as s:
        more = ledger.append_many(s, [("verdict", f"evt-{i}", {"v": i}, "2026-11-30T09:00+01:00") for i in range(3)])
    assert [e.seq for e in more] == [30, 31, 32] and more[0].at == "2026-11-30T08:00:00.000000Z"
    assert _verify(Session, ledger).ok and _verify(Session, ledger).size == 33


def _tamper(engine, sql, params=None):
    with engine.begin() as c:
        c.execute(text(sql), params or {})


def _assert_bad(Session, ledger, first_bad_seq, problem):
    report = _verify(Session, ledger)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, first_bad_seq, problem)
    assert report.root is None
    return report


def test_modified_payload_is_named_and_blocks_checkpoint(checked):
    engine, Session, ledger = checked
    before = ledger.witness_path.read_bytes()
    _tamper(engine, "UPDATE audit_log SET payload = :p WHERE seq = 17", {"p": '{"outcome":"allow"}'})
    _assert_bad(Session, ledger, 17, "entry 17 was modified: its content no longer matches its leaf hash")
    with Session() as s, pytest.raises(LedgerError) as caught:
        ledger.checkpoint(s)
    assert caught.value.report.first_bad_seq == 17 and ledger.witness_path.read_bytes() == before


def test_deleted_middle_entry_is_named(checked):
    engine, Session, ledger = checked
    _tamper(engine, "DELETE FROM audit_log WHERE seq = 12")
    report = _assert_bad(Session, ledger, 12, "entry 12 is missing (sequence jumps from 11 to 13)")
    assert report.size == 29


@pytest.mark.parametrize(
    ("rehash", "problem"),
    [
        (False, "entry 5 was modified: its content no longer matches its leaf hash"),
        # An attacker who recomputes the leaf hashes for the new positions is still caught by the chain.
        (True, "entry 5 is out of order: its prev_hash does not match entry 4"),
    ],
)
def test_swapped_entries_are_named(checked, rehash, problem):
    engine, Session, ledger = checked
    cols = ["kind", "subject_id", "at", "payload", "prev_hash", "leaf_hash"]
    with engine.connect() as c:
        rows = {r.seq: dict(r._mapping) for r in c.execute(text("SELECT * FROM audit_log WHERE seq IN (5, 9)"))}
    for seq, other in ((5, 9), (9, 5)):
        new = {**rows[other], "seq": seq}
        if rehash:
            new["leaf_hash"] = leaf_hash(new)
        sets = ", ".join(f"{k} = :{k}" for k in cols)
        _tamper(engine, f"UPDATE audit_log SET {sets} WHERE seq = :seq", new)
    _assert_bad(Session, ledger, 5, problem)


def test_truncated_tail_is_caught_by_the_head_row_then_by_the_witness(checked):
    engine, Session, ledger = checked
    with Session() as s:
        last_kept = ledger.get(s, 24).leaf_hash
    _tamper(engine, "DELETE FROM audit_log WHERE seq >= 25")
    _assert_bad(Session, ledger, 25, TRUNCATED.format(who="head"))
    _tamper(engine, "UPDATE audit_head SET size = 25, last_hash = :h WHERE id = 1", {"h": last_kept})
    assert _verify(Session, Ledger()).ok  # with the head fixed the cut is invisible from inside the database
    _assert_bad(Session, ledger, 25, TRUNCATED.format(who="witness"))


def test_rewritten_tail_with_consistent_hashes_is_caught_by_the_witness(checked):
    engine, Session, ledger = checked
    with Session() as s:
        last = ledger.get(s, 29)
    forged = {**last.model_dump(), "payload": canonical_json({"outcome": "allow"})}
    forged["leaf_hash"] = leaf_hash(forged)
    _tamper(engine, "UPDATE audit_log SET payload = :payload, leaf_hash = :leaf_hash WHERE seq = :seq", forged)
    _tamper(engine, "UPDATE audit_head SET last_hash = :leaf_hash WHERE id = 1", forged)
    assert _verify(Session, Ledger()).ok
    _assert_bad(Session, ledger, None, REWRITTEN)


def test_rolled_back_appends_leave_nothing(ledger_db):
    engine, Session, ledger = ledger_db
    with Session() as s:  # the very first append also creates the head row; that must roll back too
        ledger.append(s, kind="decision", subject_id="evt-x", payload={"a": 1}, at=T0)
        s.rollback()
    assert _verify(Session, ledger).size == 0
    _checked(Session, ledger, 5)
    with Session() as s:
        ledger.append_many(s, [("action", "evt-y", {"b": i}, T0) for i in range(3)])
        s.rollback()
    report = _verify(Session, ledger)
    assert report.ok and report.size == 5
    _checked(Session, ledger, 1, start=5)
    with Session() as s:
        assert ledger.get(s, 5).subject_id == "evt-005" and ledger.verify(s).ok


def test_invalid_entries_write_nothing(ledger_db):
    _, Session, ledger = ledger_db
    with Session.begin() as s:
        with pytest.raises(ValueError):
            ledger.append_many(s, [("decision", "a", {}, T0), ("decision", "b", {}, datetime(2026, 1, 1))])
        with pytest.raises(ValueError):
            ledger.append(s, kind="not-a-kind", subject_id="a", payload={}, at=T0)
        with pytest.raises(ValueError):
            ledger.append(s, kind="decision", subject_id="a", payload={"x": float("nan")}, at=T0)
    assert _verify(Session, ledger).size == 0


def test_concurrent_appenders_get_contiguous_sequence_numbers(ledger_db):
    _, Session, ledger = ledger_db
    barrier = threading.Barrier(2)

    def worker(name):
        barrier.wait()
        for i in range(50):
            with Session.begin() as s:
                ledger.append(s, kind="decision", subject_id=f"{name}-{i}", payload={"i": i}, at=T0)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(worker, ("a", "b")))  # re-raises a worker's exception
    with Session() as s:
        entries = ledger.entries(s, limit=1000)
        report = ledger.verify(s)
    assert [e.seq for e in entries] == list(range(100))
    for name in ("a", "b"):  # each writer's own entries keep their order
        assert [e.subject_id for e in entries if e.subject_id.startswith(name)] == [f"{name}-{i}" for i in range(50)]
    assert report.ok and report.size == 100
