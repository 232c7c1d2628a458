"""Analyst verdicts on decisions: governed, kept with their history, audited.

Only analysts and policy owners record verdicts (an admin or an ingest service does not label decisions).
Each analyst has one current verdict per decision: a new one is a new row and supersedes theirs, the old
row is kept (never replaced). Each is written to the audit ledger with who recorded it and what it
superseded. Threshold tuning counts the distinct analysts behind the verdicts (``agent.tuning``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select

from agent.approval import Principal, Role
from integrations.services.deps import ServiceDeps
from risk.audit import AuditKind
from risk.store.queries import NotFound, add_verdict
from risk.store.schema import VerdictRow

AUTHORS = frozenset({Role.ANALYST, Role.POLICY_OWNER})


class VerdictRefusal(StrEnum):
    NOT_ENTITLED = "not_entitled"
    NOT_FOUND = "not_found"
    INVALID = "invalid"


class VerdictResult(BaseModel):
    """``recorded`` with the new row's id and what it superseded, or ``refused`` with the reason."""

    outcome: Literal["recorded", "refused"]
    decision_id: str
    verdict: str
    analyst: str
    attack_type: str | None = None
    note: str | None = None
    at: str | None = None
    verdict_id: int | None = None
    superseded: list[int] = []
    audit_seq: int | None = None
    refusal: VerdictRefusal | None = None
    message: str | None = None


def record_verdict(*, deps: ServiceDeps, principal: Principal, decision_id: str, verdict: str,
                   attack_type: str | None = None, note: str | None = None,
                   attestation: str | None = None) -> VerdictResult:
    """Record ``principal``'s current verdict (``malicious`` or ``benign``) on a decision.

    Returns:
        ``recorded`` (committed and audited), or ``refused`` (nothing stored): not an analyst or policy owner,
        no such decision, or not a valid verdict.
    """
    base: dict[str, Any] = {"decision_id": decision_id, "verdict": verdict, "analyst": principal.id,
            "attack_type": attack_type,
            "note": note}
    if not principal.roles & AUTHORS:
        have = ", ".join(sorted(r.value for r in principal.roles)) or "no roles"
        return VerdictResult(outcome="refused", refusal=VerdictRefusal.NOT_ENTITLED, **base,
                             message=f"{principal.id} ({have}) may not record verdicts: that needs the role analyst "
                                     "or policy_owner")
    if verdict not in ("malicious", "benign"):
        return VerdictResult(outcome="refused", refusal=VerdictRefusal.INVALID, **base,
                             message="verdict must be 'malicious' or 'benign'")
    now = deps.clock()
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with deps.write_lock, deps.sessions.begin() as s:
            row = add_verdict(s, decision_id=decision_id, verdict=verdict, analyst=principal.id,
                              attack_type=attack_type, note=note, at=at)
            s.flush()
            superseded = list(s.scalars(select(VerdictRow.id).where(VerdictRow.superseded_by == row.id)))
            entry = deps.ledger.append(s, kind=AuditKind.VERDICT, subject_id=decision_id, at=now, payload={
                **base, "verdict_id": row.id, "supersedes": superseded,
                **({"attestation": attestation} if attestation else {})})
    except NotFound:
        return VerdictResult(outcome="refused", refusal=VerdictRefusal.NOT_FOUND, **base,
                             message=f"no decision {decision_id!r}")
    return VerdictResult(outcome="recorded", **base, at=at, verdict_id=row.id, superseded=superseded,
                         audit_seq=entry.seq)
