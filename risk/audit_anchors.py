"""Reading the ledger's anchors outside the database: the witness file, the sinks' newest heads, and their
signatures. The ledger then checks its entries against each head found (risk/audit.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from risk.audit_heads import HeadSink, HeadVerifier, SignedHead
from risk.audit_report import AuditCheck


@dataclass
class Anchors:
    """The heads found outside the database, and the problems found reading or checking them."""

    names: list[str]  # what the ledger is checked against, for the report
    heads: list[tuple[str, AuditCheck, SignedHead]]  # (where it was found, its check, the head)
    problems: list[tuple[int | None, AuditCheck, str]]


def read_anchors(witness_path: Path | None, verifier: HeadVerifier | None, sinks: Sequence[HeadSink]) -> Anchors:
    """The heads found outside the database, with the problems found in reading or checking them."""
    out = Anchors([], [], [])
    if witness_path is None:
        return out
    out.names.append(f"witness {witness_path}")
    witness, problem = read_witness(witness_path)
    if problem is not None:
        out.problems.append((None, AuditCheck.WITNESS, problem))
    if verifier is not None:
        out.names.append(f"audit key {verifier.key_id}")
    for sink in sinks:
        out.names.append(sink.name)
        latest = sink.latest()
        if isinstance(latest, str):
            out.problems.append((None, AuditCheck.SINK, latest))
        elif latest is not None:
            out.heads.append((f"newest head in the {sink.name}", AuditCheck.SINK, latest))
            if witness is not None and latest.ledger_id != witness.ledger_id:
                out.problems.append((None, AuditCheck.SINK, (
                    f"the {sink.name} last recorded ledger {latest.ledger_id}, but the witness names "
                    f"ledger {witness.ledger_id}: the ledger was replaced or re-initialised")))
    if witness is not None:
        out.heads.insert(0, ("witness", AuditCheck.WITNESS, witness))
    if verifier is not None:
        for where, _check, head in out.heads:
            bad = verifier.problem(head, where)
            if bad is not None:
                out.problems.append((None, AuditCheck.SIGNATURE, bad))
    return out


def read_witness(witness_path: Path | None) -> tuple[SignedHead | None, str | None]:
    """The witness head, or the sentence saying why there is none (None, None when no witness is configured)."""
    if witness_path is None:
        return None, None
    if not witness_path.exists():
        return None, (f"the witness file {witness_path} is missing: it was deleted, or the ledger was "
                      "never initialised (`glassgate audit init`)")
    try:
        return SignedHead.model_validate_json(witness_path.read_bytes()), None
    except (OSError, ValidationError):
        return None, f"the witness file {witness_path} is unreadable or not a tree head"
