"""The IAM adapter seam, and the built-in adapter that closes the loop inside glassgate.

External adapters (Okta, Entra, Keycloak) come later behind the same protocol; each must
pass the proposal id as its idempotency key so that a retry never applies an action twice.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.approval import ApprovalRules, Kind
from risk.policy import PolicySet
from risk.store.control import ApprovalRow, ExceptionRow, ProposalRow, RevocationRow
from risk.store.policies import effective_policy, record_version
from risk.store.queries import add_verdict


class IamUnavailable(Exception):
    """The IAM system could not be reached or asked us to come back later (a timeout, a 5xx, a rate limit).
    Nothing was applied: the proposal stays approved and the recovery sweep tries again. Any other
    exception from an adapter is final: the proposal is marked failed with the error. ``retry_at``, when the
    IAM system said (Retry-After, X-Rate-Limit-Reset), is the earliest time the sweep tries again."""

    def __init__(self, message: str, *, retry_at: datetime | None = None, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.retry_at = retry_at
        self.detail = detail or {}


class IamAdapter(Protocol):
    name: str

    def apply(self, s: Session, proposal: ProposalRow, *, now: datetime) -> dict[str, Any]:
        """Carry out an approved proposal; return what was done. Raise IamUnavailable for a transient
        failure (retried), anything else for a final one."""
        ...

    def withdraw(self, s: Session, proposal: ProposalRow, *, now: datetime) -> dict[str, Any] | None:
        """The executor refused ``proposal`` (its window ended before it could run): make sure nothing of it
        stays applied, for an earlier attempt may have reached the IAM system before a crash. What was
        scheduled, or None when there is nothing to undo."""
        ...


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class BuiltinIam:
    """glassgate as its own decision point: changes land in tables the engine reads on every event."""

    name = "builtin"

    def __init__(self, *, base_policy: PolicySet, rules: ApprovalRules):
        self.base_policy = base_policy
        self.rules = rules

    def withdraw(self, s: Session, proposal: ProposalRow, *, now: datetime) -> dict[str, Any] | None:
        return None  # the built-in effects commit with their execution record: a refused one left nothing

    def apply(self, s: Session, proposal: ProposalRow, *, now: datetime) -> dict[str, Any]:
        p = proposal.payload
        kind = Kind(proposal.kind)
        approvers = list(s.scalars(select(ApprovalRow.principal).where(
            ApprovalRow.proposal_id == proposal.proposal_id, ApprovalRow.decision == "approve").order_by(ApprovalRow.id)))
        if not approvers:  # never the requester: an action without a recorded approver is not carried out
            raise PermissionError(f"proposal {proposal.proposal_id} has no recorded approver")
        approver = approvers[-1]
        if kind is Kind.CONFIRM_DENIAL:
            add_verdict(s, decision_id=p["decision_id"], verdict="malicious", analyst=approver,
                        at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), note=p.get("note") or None)
            return {"verdict": "malicious", "decision_id": p["decision_id"]}
        if kind is Kind.GRANT_EXCEPTION:
            eid = "exc-" + hashlib.sha256(proposal.proposal_id.encode()).hexdigest()[:12]
            # the window starts at the approval, so an execution delayed by a crash never extends it
            start = datetime.fromtimestamp(proposal.decided_ms / 1000, UTC) if proposal.decided_ms else now
            ends = start + timedelta(hours=float(p["duration_hours"]))
            section = self.rules.kinds[kind].section or ""
            s.add(ExceptionRow(exception_id=eid, user_id=p["user_id"], resource_id=p["resource_id"],
                               starts_ms=_ms(start), ends_ms=_ms(ends), reason=p["reason"],
                               proposal_id=proposal.proposal_id, policy_id=self.rules.policy_id,
                               policy_version=self.rules.policy_version, section=section))
            return {"exception_id": eid, "user_id": p["user_id"], "resource_id": p["resource_id"],
                    "ends_at": ends.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if kind is Kind.REVOKE_SESSION:
            if s.get(RevocationRow, p["session_id"]) is None:
                s.add(RevocationRow(session_id=p["session_id"], revoked_ms=_ms(now), proposal_id=proposal.proposal_id,
                                    reason=p["reason"]))
            return {"session_id": p["session_id"], "revoked_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if kind is Kind.PROMOTE_MODEL:
            from risk.registry import apply_promotion

            return apply_promotion(s, version=p["version"], proposal_id=proposal.proposal_id, by=approver,
                                   now_ms=_ms(now))
        current = effective_policy(s, self.base_policy)
        new = current.with_thresholds(policy_id=p["policy_id"], scope=p["scope"], step_up_at=p["step_up_at"],
                                      deny_at=p["deny_at"])
        doc = new.get(p["policy_id"])
        record_version(s, doc=doc, proposal_id=proposal.proposal_id, now_ms=_ms(now))
        return {"policy_id": doc.id, "version": doc.version, "scope": p["scope"], "step_up_at": p["step_up_at"],
                "deny_at": p["deny_at"]}
