"""Tamper-evident audit ledger: canonical-JSON entries, a hash chain and an RFC 6962 Merkle tree.

Each entry's leaf hash covers its own content, its sequence number and its predecessor's
leaf hash, so editing, removing or reordering a stored entry breaks verification at that
entry. Cutting off the tail (and fixing the head row to match), or rewriting everything and
recomputing the chain, is invisible from inside the database; the anchors outside it catch
that: the witness file holding the last checkpointed tree head, signed with a key the attacker
cannot read, and the same signed heads published to append-only sinks the attacker cannot
rewrite (risk/audit_heads.py). A missing witness is a failure: ``init`` creates the first one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, CheckConstraint, Integer, String, Table, Text, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from risk.audit_anchors import Anchors, read_anchors, read_witness
from risk.audit_heads import HeadSigner, HeadSink, HeadVerifier, SignedHead
from risk.audit_report import AuditCheck, AuditFailure, LedgerError, TreeHead, VerifyReport
from risk.events import canonical_json
from risk.merkle import Accumulator, merkle_root
from risk.store.base import Base

# re-exported: callers use them next to the ledger
__all__ = ["AuditCheck", "AuditFailure", "LedgerError", "TreeHead", "VerifyReport", "merkle_root"]

GENESIS_HASH = "0" * 64
_CHUNK = 2000
_MAX_FAILURES = 20  # a report names this many failures at most; the first is the one to act on
Payload = Mapping[str, Any]
When = datetime | str


class AuditKind(StrEnum):
    DECISION = "decision"
    VERDICT = "verdict"
    NARRATIVE = "narrative"
    PROPOSAL = "proposal"
    APPROVAL = "approval"
    ACTION = "action"
    POLICY_VERSION = "policy_version"
    MODEL_VERSION = "model_version"  # a risk model started in shadow (its promotion is an ACTION)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    at: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    leaf_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


_LOG = cast(Table, AuditEntry.__table__)
_HEAD = cast(Table, AuditHead.__table__)


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    kind: str
    subject_id: str
    at: str
    payload: dict[str, Any]
    prev_hash: str
    leaf_hash: str


def leaf_hash(entry: Mapping[Any, Any]) -> str:
    """Hex leaf hash of a stored entry: ``SHA-256(0x00 || canonical JSON of the entry)``.

    Args:
        entry: ``seq``, ``kind``, ``subject_id``, ``at``, ``prev_hash`` and ``payload`` as stored
            (canonical JSON text). The form is composed around that text rather than re-serialising
            a parsed payload, so any byte change to it is detected; for canonical text it equals
            ``canonical_json`` of those six fields with the payload parsed.
    """
    c = canonical_json  # keys below are in sorted order
    text = f'{{"at":{c(entry["at"])},"kind":{c(entry["kind"])},"payload":{entry["payload"]},'
    text += f'"prev_hash":{c(entry["prev_hash"])},"seq":{int(entry["seq"])},"subject_id":{c(entry["subject_id"])}}}'
    return hashlib.sha256(b"\x00" + text.encode("utf-8")).hexdigest()


def _iso(at: When) -> str:
    dt = datetime.fromisoformat(at) if isinstance(at, str) else at
    if dt.tzinfo is None:
        raise ValueError(f"audit time {at!r} has no time zone")
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _prepare(kind: AuditKind | str, subject_id: str, payload: Payload, at: When) -> tuple[str, str, str, str]:
    if not isinstance(payload, Mapping):
        raise TypeError(f"audit payload must be a mapping, not {type(payload).__name__}")
    if not 0 < len(subject_id) <= 200:
        raise ValueError("audit subject_id must be 1 to 200 characters")
    return AuditKind(kind).value, subject_id, canonical_json(dict(payload)), _iso(at)


def _out(row: Mapping[Any, Any]) -> AuditEntryOut:
    return AuditEntryOut(**{**row, "payload": json.loads(row["payload"])})


class Ledger:
    """The audit ledger over the caller's session, anchored outside the database.

    Args:
        witness_path: File outside the database recording the latest checkpointed (signed) tree head.
            When set, a missing witness is a verification failure (``init`` creates the first one).
            None checks the database alone (no anchor: a truncation with the head row fixed passes).
        signer: Signs each head written to the witness and the sinks; None writes unsigned heads.
        verifier: Checks the signature on the witness and on each sink's newest head; when set, an
            unsigned or wrongly signed head is a failure.
        sinks: Append-only places outside the service's reach that receive every checkpointed head;
            the newest head each one holds must be consistent with the ledger.
        clock: Returns the current aware time; used for ``VerifyReport.checked_at`` and head times.
    """

    def __init__(self, *, witness_path: Path | None = None, signer: HeadSigner | None = None,
                 verifier: HeadVerifier | None = None, sinks: Sequence[HeadSink] = (),
                 clock: Callable[[], datetime] | None = None):
        self.witness_path = witness_path
        self.signer = signer
        self.verifier = verifier
        self.sinks = tuple(sinks)
        self._clock = clock or (lambda: datetime.now(UTC))

    def append(
        self, session: Session, *, kind: AuditKind | str, subject_id: str, payload: Payload, at: When
    ) -> AuditEntryOut:
        """Add one entry inside the caller's transaction (the caller commits)."""
        return self.append_many(session, [(kind, subject_id, payload, at)])[0]

    def append_many(
        self, session: Session, entries: Iterable[tuple[AuditKind | str, str, Payload, When]]
    ) -> list[AuditEntryOut]:
        """Add ``(kind, subject_id, payload, at)`` entries in order under one head lock, inserted in bulk.

        Raises:
            ValueError, TypeError: An entry is invalid; nothing was written.
            LedgerError: The head row is missing while entries exist.
        """
        prepared = [_prepare(*entry) for entry in entries]
        if not prepared:
            return []
        size, last = self._lock_head(session)
        rows: list[dict[str, Any]] = []
        for offset, (kind, subject_id, payload_json, at) in enumerate(prepared):
            row = dict(seq=size + offset, kind=kind, subject_id=subject_id, at=at, payload=payload_json, prev_hash=last)
            last = row["leaf_hash"] = leaf_hash(row)
            rows.append(row)
        for start in range(0, len(rows), _CHUNK):
            session.execute(insert(_LOG), rows[start : start + _CHUNK])
        session.execute(update(_HEAD).where(_HEAD.c.id == 1).values(size=size + len(rows), last_hash=last))
        return [_out(row) for row in rows]

    def init(self, session: Session, *, ledger_id: str, adopt: bool = False) -> SignedHead:
        """Create the first witness: sign the ledger's current head, publish it to the sinks, write it.

        Args:
            session: Session over the ledger's database.
            ledger_id: A fresh name for this ledger generation (random; the caller chooses it).
            adopt: Trust the ledger's current content although it is not empty or a witness exists
                (starting a new generation over it); refused otherwise, because that content may be
                an attacker's.

        Raises:
            LedgerError: No witness path, a witness exists, the ledger is not empty, or its entries do
                not verify; nothing was written.
        """
        if self.witness_path is None:
            raise LedgerError("no witness path is configured: there is nothing to initialise")
        if self.witness_path.exists() and not adopt:
            raise LedgerError(f"the audit ledger is already initialised: {self.witness_path} exists")
        report, head = self._verify(session, anchored=False)
        if head is None:
            raise LedgerError(f"refusing to initialise: {report.problem}", report)
        if head.size and not adopt:
            raise LedgerError(f"the ledger holds {head.size} entries but has no witness: they may not be the "
                              "ones written (a deleted witness hides a rewrite); adopt them explicitly only "
                              "if you trust them", report)
        signed = self._publish(SignedHead(ledger_id=ledger_id, at=_iso(self._clock()), **head.model_dump()))
        _write_atomically(self.witness_path, canonical_json(signed.model_dump()).encode("utf-8"))
        return signed

    def checkpoint(self, session: Session) -> TreeHead:
        """Verify the ledger, then sign its tree head, publish it to the sinks and record it in the witness.

        Raises:
            LedgerError: Verification failed (a missing witness included) or a sink refused the head;
                the witness is left untouched.
        """
        report, head = self._verify(session)
        if head is None:
            raise LedgerError(f"refusing to checkpoint: {report.problem}", report)
        if self.witness_path is not None:
            current, _ = read_witness(self.witness_path)
            if current is not None and current.size < head.size:  # never move the witness backwards
                signed = self._publish(SignedHead(ledger_id=current.ledger_id, at=_iso(self._clock()),
                                                  **head.model_dump()))
                _write_atomically(self.witness_path, canonical_json(signed.model_dump()).encode("utf-8"))
        return head

    def verify(self, session: Session) -> VerifyReport:
        """Recompute every leaf, the chain, the head row; check the witness, its signature and the sinks'
        newest heads against the ledger; name each failure."""
        return self._verify(session)[0]

    def entries(self, session: Session, *, after_seq: int = -1, limit: int = 1000) -> list[AuditEntryOut]:
        """Entries with ``seq > after_seq`` in order, at most ``limit`` of them (for export)."""
        stmt = select(_LOG).where(_LOG.c.seq > after_seq).order_by(_LOG.c.seq).limit(limit)
        return [_out(row) for row in session.execute(stmt).mappings()]

    def size(self, session: Session) -> int:
        """How many entries the head records (0 for an empty ledger); cheap, unlike verify."""
        return int(session.scalar(select(_HEAD.c.size).where(_HEAD.c.id == 1)) or 0)

    def get(self, session: Session, seq: int) -> AuditEntryOut | None:
        """The entry at ``seq``, or None."""
        row = session.execute(select(_LOG).where(_LOG.c.seq == seq)).mappings().one_or_none()
        return None if row is None else _out(row)

    def _publish(self, head: SignedHead) -> SignedHead:
        signed = self.signer.sign(head) if self.signer is not None else head
        for sink in self.sinks:  # before the witness: a sink ahead of the witness is consistent, not behind
            try:
                sink.publish(signed)
            except Exception as exc:  # noqa: BLE001 - any transport error; the next checkpoint retries
                raise LedgerError(f"could not publish the tree head to the {sink.name}: {exc}") from exc
        return signed

    def _lock_head(self, session: Session) -> tuple[int, str]:
        # A write is the first statement so SQLite takes its writer lock before we read the head
        # (a plain SELECT there holds no lock); on PostgreSQL the UPDATE locks the row.
        lock = update(_HEAD).where(_HEAD.c.id == 1).values(size=_HEAD.c.size).returning(_HEAD.c.size, _HEAD.c.last_hash)
        row = session.execute(lock).one_or_none()
        if row is None:
            # First append ever (or a deleted head). Insert-or-skip waits for a concurrent first
            # appender on PostgreSQL, so the second one then sees its committed head.
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            session.execute(
                dialect.insert(_HEAD)
                .values(id=1, size=0, last_hash=GENESIS_HASH)
                .on_conflict_do_nothing(index_elements=["id"])
            )
            row = session.execute(lock).one()
            if row.size == 0 and session.scalar(select(func.max(_LOG.c.seq))) is not None:
                raise LedgerError("audit_head is missing while audit_log holds entries")
        return row.size, row.last_hash

    def _verify(self, session: Session, *, anchored: bool = True) -> tuple[VerifyReport, TreeHead | None]:
        acc = Accumulator()
        anchors = read_anchors(self.witness_path, self.verifier, self.sinks) if anchored else Anchors([], [], [])
        with closing(self._problems(session, acc, anchors)) as problems:
            failures = [AuditFailure(check=c, seq=seq, problem=p) for seq, c, p in islice(problems, _MAX_FAILURES)]
        now = self._clock()
        if failures:
            size = session.scalar(select(func.count()).select_from(_LOG)) or 0
            first = failures[0]
            bad_seq = next((f.seq for f in failures if f.seq is not None), None)  # e.g. a missing witness has none
            report = VerifyReport(ok=False, size=size, root=None, first_bad_seq=bad_seq, problem=first.problem,
                                  checked_at=now, failures=failures, anchors=anchors.names)
            return report, None
        head = TreeHead(size=acc.size, root=acc.root().hex(), last_hash=acc.last.hex())
        report = VerifyReport(ok=True, size=head.size, root=head.root, first_bad_seq=None, problem=None,
                              checked_at=now, anchors=anchors.names)
        return report, head

    def _problems(
        self, session: Session, acc: Accumulator, anchors: Anchors
    ) -> Generator[tuple[int | None, AuditCheck, str], None, None]:
        """Yield (first bad seq, check, sentence) for each problem, entries in seq order first."""
        head = session.execute(select(_HEAD.c.size, _HEAD.c.last_hash).where(_HEAD.c.id == 1)).one_or_none()
        wanted = {h.size for _, _, h in anchors.heads}
        roots: dict[int, str] = {0: acc.root().hex()} if 0 in wanted else {}
        head_leaf = None
        expected, prev = 0, GENESIS_HASH
        rows = session.execute(select(_LOG).order_by(_LOG.c.seq).execution_options(yield_per=_CHUNK))
        entries = AuditCheck.ENTRIES
        with closing(rows):
            for row in rows.mappings():
                seq, stored = row["seq"], row["leaf_hash"]
                if seq < expected:
                    yield seq, entries, f"entry {seq} has an invalid sequence number"
                if seq > expected:
                    jump = f"sequence jumps from {expected - 1} to {seq}" if expected else f"sequence starts at {seq}"
                    yield expected, entries, f"entry {expected} is missing ({jump})"
                if leaf_hash(row) != stored:
                    yield seq, entries, f"entry {seq} was modified: its content no longer matches its leaf hash"
                if row["prev_hash"] != prev:
                    before = f"entry {seq - 1}" if seq else "the genesis value"
                    yield seq, entries, f"entry {seq} is out of order: its prev_hash does not match {before}"
                acc.add(bytes.fromhex(stored))
                expected, prev = seq + 1, stored
                if head is not None and seq == head.size - 1:
                    head_leaf = stored
                if acc.size in wanted:
                    roots[acc.size] = acc.root().hex()
        n = acc.size
        held = f"the database holds {n}"
        if head is None:
            if n:
                yield None, AuditCheck.HEAD, f"the audit_head row is missing although the ledger holds {n} entries"
        elif n < head.size:
            yield (n, AuditCheck.HEAD,
                   f"the ledger was truncated: the head records {head.size} entries, {held}; first missing entry is {n}")
        elif head.size and head_leaf != head.last_hash:
            yield head.size - 1, AuditCheck.HEAD, f"the head's last_hash does not match entry {head.size - 1}"
        elif n > head.size:
            later = session.scalar(select(_HEAD.c.size).where(_HEAD.c.id == 1)) or 0  # concurrent appends are fine
            if n > later:
                yield (later, AuditCheck.HEAD,
                       f"entry {later} is not covered by the head: it was written without updating audit_head")
        yield from anchors.problems
        for where, check, anchor in anchors.heads:
            w = anchor.size
            if n < w:
                yield (n, check,
                       f"the ledger was truncated: the {where} records {w} entries, {held}; first missing entry is {n}")
            elif roots.get(w) != anchor.root:
                yield None, check, f"the ledger was rewritten: its first {w} entries no longer hash to the {where} root"

def _write_atomically(path: Path, data: bytes) -> None:
    """Write a file so readers see the old or the new content, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
