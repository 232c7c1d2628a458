"""The dashboard's use cases that weigh or change something: pending proposals with their evidence,
approving or rejecting one (through the one approval path), the what-if replay and drafting a threshold
change from it, an analyst's verdict, the audit ledger's status, and a decision's verified narrative.

Two of them still go through ``integrations.actions`` with the Runtime (the approval and the narrative);
each does so in ONE small function here (:func:`_approval_path`, :func:`_narrative_path`) so that they can
be re-pointed at the service layer's own functions once those exist.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from pydantic import BaseModel

from agent.approval import ApprovalError, Channel, Kind, Principal, Refusal, Status
from agent.narrative import Audience
from agent.proposals import ProposalRecord, list_proposals
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from risk.audit import AuditKind, VerifyReport
from risk.store.queries import NotFound, add_verdict
from tools.registry import ToolInputError, call_tool
from tools.tuning import ReplayThresholdOutput, ScopeStats

PENDING_MAX = 50


class Evidence(BaseModel):
    replay: ReplayThresholdOutput | None = None  # change_threshold: the change replayed over stored decisions
    verdicts: ScopeStats | None = None  # analyst verdicts in the scope the change governs
    decision_ids: list[str] = []


class PendingProposal(BaseModel):
    record: ProposalRecord
    evidence: Evidence
    cite: str  # the policy section that says who may approve it
    roles: list[str]  # roles entitled to approve it


class ApprovalOutcome(BaseModel):
    proposal_id: str
    approve: bool
    ok: bool
    status: str | None = None  # the proposal's status afterwards
    refusal: Refusal | None = None
    message: str | None = None  # the refusal, citing the policy section


class AuditStatus(BaseModel):
    size: int
    last_check: VerifyReport | None  # the periodic checkpoint's last verification (None before the first)


def _approval_path(rt: Runtime, *, proposal_id: str, principal: Principal, approve: bool,
                   reason: str | None) -> dict[str, Any]:
    """The one approval function (re-point at the service layer's ``proposals.decide`` when it lands)."""
    from integrations.actions import decide_proposal

    return decide_proposal(rt, proposal_id=proposal_id, principal=principal, approve=approve,
                           channel=Channel.API, reason=reason)


def _narrative_path(rt: Runtime, *, decision_id: str, audience: Audience) -> dict[str, Any]:
    """The verified narrative, as ``GET /v1/decisions/{id}/narrative`` gives it."""
    from integrations.actions import explain_decision

    return explain_decision(rt, decision_id=decision_id, audience=audience)


def _evidence(deps: ServiceDeps, rec: ProposalRecord) -> Evidence:
    ids = [str(i) for i in rec.evidence.get("decision_ids", []) if isinstance(i, str)]
    if "decision_id" in rec.payload:
        ids.append(str(rec.payload["decision_id"]))
    if rec.kind is not Kind.CHANGE_THRESHOLD:
        return Evidence(decision_ids=ids)
    p = rec.payload
    try:
        replay = call_tool(deps.tools, "replay_threshold", {k: p[k] for k in ("policy_id", "scope", "step_up_at",
                                                                              "deny_at")})
        stats = call_tool(deps.tools, "verdict_stats", {"policy_id": p["policy_id"], "scope": p["scope"]})
    except ToolInputError:  # e.g. the policy no longer sets that scope: shown without a replay
        return Evidence(decision_ids=ids)
    return Evidence(replay=replay, verdicts=stats.scopes[0] if stats.scopes else None, decision_ids=ids)


def pending(*, deps: ServiceDeps, rt: Runtime, lock: threading.Lock) -> list[PendingProposal]:
    """Pending proposals, newest first, each with its evidence (due ones are expired first)."""
    from integrations.actions import expire

    with lock:
        expire(rt)
    with deps.sessions() as s:
        recs = list_proposals(s, rules=deps.rules, status=Status.PENDING, limit=PENDING_MAX)
    return [PendingProposal(record=r, evidence=_evidence(deps, r), cite=deps.rules.cite(r.kind),
                            roles=sorted(x.value for x in deps.rules.kinds[r.kind].roles)) for r in recs]


def decide(*, rt: Runtime, lock: threading.Lock, proposal_id: str, principal: Principal, approve: bool,
           reason: str | None) -> ApprovalOutcome:
    """Approve or reject as ``principal``; a refusal comes back as data (nothing changed then)."""
    with lock:
        try:
            rec = _approval_path(rt, proposal_id=proposal_id, principal=principal, approve=approve, reason=reason)
        except ApprovalError as exc:
            return ApprovalOutcome(proposal_id=proposal_id, approve=approve, ok=False, refusal=exc.reason,
                                   message=str(exc))
    return ApprovalOutcome(proposal_id=proposal_id, approve=approve, ok=True, status=rec.get("status"))


def whatif(*, deps: ServiceDeps, policy_id: str, scope: str, step_up_at: float | None,
           deny_at: float | None) -> ReplayThresholdOutput:
    """Replay thresholds for a scope (``replay_threshold``). Raises ToolInputError naming bad fields."""
    return call_tool(deps.tools, "replay_threshold", {"policy_id": policy_id, "scope": scope,
                                                      "step_up_at": step_up_at, "deny_at": deny_at})


def draft_threshold_change(*, deps: ServiceDeps, lock: threading.Lock, principal: Principal, policy_id: str,
                           scope: str, step_up_at: float, deny_at: float) -> dict[str, Any]:
    """Draft a change_threshold proposal (``propose_action``) with the replay's headline figures as evidence.
    Raises ToolInputError naming bad fields."""
    replay = whatif(deps=deps, policy_id=policy_id, scope=scope, step_up_at=step_up_at, deny_at=deny_at).result
    evidence = {"replay": {"changed": replay.overall.changed, "total": replay.overall.total,
                           "benign_denials_released": replay.benign_denials_released,
                           "malicious_newly_allowed": replay.malicious_newly_allowed},
                "drafted_from": "dashboard what-if"}
    ctx = dataclasses.replace(deps.tools, principal=principal.id)
    with lock:
        out = call_tool(ctx, "propose_action", {"kind": "change_threshold", "evidence": evidence, "payload": {
            "policy_id": policy_id, "scope": scope, "step_up_at": step_up_at, "deny_at": deny_at}})
    return dict(out.proposal)


def record_verdict(*, deps: ServiceDeps, lock: threading.Lock, decision_id: str, principal: Principal,
                   verdict: str, attack_type: str | None, note: str | None) -> int:
    """Record and audit an analyst's verdict exactly as ``POST /v1/decisions/{id}/verdict`` does; the audit
    sequence number. Raises NotFound for an unknown decision (nothing stored)."""
    with lock:
        now = deps.clock()
        at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        with deps.sessions.begin() as s:
            add_verdict(s, decision_id=decision_id, verdict=verdict, analyst=principal.id, attack_type=attack_type,
                        note=note, at=at)
            entry = deps.ledger.append(s, kind=AuditKind.VERDICT, subject_id=decision_id,
                                       payload={"decision_id": decision_id, "verdict": verdict,
                                                "attack_type": attack_type, "analyst": principal.id, "note": note},
                                       at=now)
    return entry.seq


def audit_status(*, deps: ServiceDeps, last_check: VerifyReport | None) -> AuditStatus:
    """The ledger's size and the periodic checkpoint's last verification (a full verify is on demand)."""
    with deps.sessions() as s:
        return AuditStatus(size=deps.ledger.size(s), last_check=last_check)


def verify_now(*, deps: ServiceDeps) -> VerifyReport:
    """Verify the whole ledger now (every leaf, the chain, the head and the witness)."""
    with deps.sessions() as s:
        return deps.ledger.verify(s)


def narrative(*, rt: Runtime, decision_id: str, audience: Audience) -> dict[str, Any]:
    """The decision's narrative for ``audience``, checked by the verifier."""
    return _narrative_path(rt, decision_id=decision_id, audience=audience)


__all__ = ["ApprovalOutcome", "AuditStatus", "NotFound", "PendingProposal", "audit_status", "decide",
           "draft_threshold_change", "narrative", "pending", "record_verdict", "verify_now", "whatif"]
