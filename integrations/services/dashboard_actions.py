"""The dashboard's use cases that weigh or change something: pending proposals with their evidence,
approving or rejecting one (through the one approval path), the what-if replay and drafting a threshold
change from it, an analyst's verdict, the audit ledger's status, and a decision's verified narrative.

Approvals, verdicts and narratives go through the service layer's own functions (``proposals.decide``, the
one approval function; ``verdicts.record_verdict``; ``ask.explain_decision``), as every other channel's do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel

from agent.approval import Channel, Kind, Principal, Refusal, Status
from agent.narrative import Audience
from agent.proposals import ProposalRecord, list_proposals
from integrations.services import ask, proposals, verdicts
from integrations.services.deps import ServiceDeps
from risk.audit import VerifyReport
from risk.store.queries import NotFound
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


def pending(*, deps: ServiceDeps) -> list[PendingProposal]:
    """Pending proposals, newest first, each with its evidence (due ones are expired first)."""
    proposals.expire(deps=deps)
    with deps.sessions() as s:
        recs = list_proposals(s, rules=deps.rules, status=Status.PENDING, limit=PENDING_MAX)
    return [PendingProposal(record=r, evidence=_evidence(deps, r), cite=deps.rules.cite(r.kind),
                            roles=sorted(x.value for x in deps.rules.kinds[r.kind].roles)) for r in recs]


def decide(*, deps: ServiceDeps, proposal_id: str, principal: Principal, approve: bool,
           reason: str | None) -> ApprovalOutcome:
    """Approve or reject as ``principal`` through the one approval function; a refusal comes back as data
    (nothing changed then). The dashboard authenticates like the API (a principal's token, then a session
    cookie and CSRF token), so it decides on the API channel's terms."""
    out = proposals.decide(deps=deps, proposal_id=proposal_id, principal=principal, approve=approve,
                           channel=Channel.API, reason=reason)
    if out.outcome is proposals.Outcome.REFUSED:
        return ApprovalOutcome(proposal_id=proposal_id, approve=approve, ok=False, refusal=out.refusal,
                               message=out.message)
    return ApprovalOutcome(proposal_id=proposal_id, approve=approve, ok=True,
                           status=out.proposal.status.value if out.proposal else None)


def whatif(*, deps: ServiceDeps, policy_id: str, scope: str, step_up_at: float | None,
           deny_at: float | None) -> ReplayThresholdOutput:
    """Replay thresholds for a scope (``replay_threshold``). Raises ToolInputError naming bad fields."""
    return call_tool(deps.tools, "replay_threshold", {"policy_id": policy_id, "scope": scope,
                                                      "step_up_at": step_up_at, "deny_at": deny_at})


def draft_threshold_change(*, deps: ServiceDeps, principal: Principal, policy_id: str,
                           scope: str, step_up_at: float, deny_at: float) -> dict[str, Any]:
    """Draft a change_threshold proposal (``propose_action``) with the replay's headline figures as evidence.
    Raises ToolInputError naming bad fields."""
    replay = whatif(deps=deps, policy_id=policy_id, scope=scope, step_up_at=step_up_at, deny_at=deny_at).result
    evidence = {"replay": {"changed": replay.overall.changed, "total": replay.overall.total,
                           "benign_denials_released": replay.benign_denials_released,
                           "malicious_newly_allowed": replay.malicious_newly_allowed},
                "drafted_from": "dashboard what-if"}
    ctx = dataclasses.replace(deps.tools, principal=principal.id)
    with deps.write_lock:
        out = call_tool(ctx, "propose_action", {"kind": "change_threshold", "evidence": evidence, "payload": {
            "policy_id": policy_id, "scope": scope, "step_up_at": step_up_at, "deny_at": deny_at}})
    return dict(out.proposal)


def record_verdict(*, deps: ServiceDeps, decision_id: str, principal: Principal, verdict: str,
                   attack_type: str | None, note: str | None) -> verdicts.VerdictResult:
    """Record ``principal``'s verdict through the verdict service (who may, one current verdict per analyst,
    audited). Raises NotFound for an unknown decision (nothing stored)."""
    out = verdicts.record_verdict(deps=deps, principal=principal, decision_id=decision_id, verdict=verdict,
                                  attack_type=attack_type, note=note)
    if out.refusal is verdicts.VerdictRefusal.NOT_FOUND:
        raise NotFound(decision_id)
    return out


def audit_status(*, deps: ServiceDeps, last_check: VerifyReport | None) -> AuditStatus:
    """The ledger's size and the periodic checkpoint's last verification (a full verify is on demand)."""
    with deps.sessions() as s:
        return AuditStatus(size=deps.ledger.size(s), last_check=last_check)


def verify_now(*, deps: ServiceDeps) -> VerifyReport:
    """Verify the whole ledger now (every leaf, the chain, the head and the witness)."""
    with deps.sessions() as s:
        return deps.ledger.verify(s)


def narrative(*, deps: ServiceDeps, decision_id: str, audience: Audience) -> ask.Narrated:
    """The decision's narrative for ``audience``, checked by the verifier (the one narrative path)."""
    return ask.explain_decision(deps=deps, decision_id=decision_id, audience=audience)


__all__ = ["ApprovalOutcome", "AuditStatus", "NotFound", "PendingProposal", "audit_status", "decide",
           "draft_threshold_change", "narrative", "pending", "record_verdict", "verify_now", "whatif"]
