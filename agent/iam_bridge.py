"""The executor's IAM adapter when glassgate acts in a vendor IAM: turns the approved proposal into a typed
:class:`~agent.iam_types.IamRequest`, hands it to the vendor adapter (which never sees the store), and keeps
glassgate's own record of the effect (the built-in adapter, in the executor's transaction).

The vendor is called inside the executor's transaction, under the proposal's row lock, so two sweeps never
call it for the same proposal at once. Its outcome and glassgate's record commit together; should the process
die after the vendor applied the call and before that commit, the proposal is still approved without an
execution, and the next sweep's call finds the vendor's state applied (the adapter reads before it writes)
and records ``already_applied`` without a second write. A granted exception also records its expiry
(``iam_expiries``), which :mod:`agent.iam_expiry` runs through the same adapter when the window ends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.approval import Kind
from agent.iam import BuiltinIam, IamUnavailable
from agent.iam_attempts import record_attempt
from agent.iam_types import ActionMode, IamAction, IamAdapter, IamRequest, IamStatus
from risk.store.control import ApprovalRow, IamExpiryRow, ProposalRow
from risk.store.schema import DecisionRow

ACTION_OF = {Kind.REVOKE_SESSION: IamAction.REVOKE_SESSION, Kind.GRANT_EXCEPTION: IamAction.GRANT_EXCEPTION,
             Kind.CONFIRM_DENIAL: IamAction.CONFIRM_DENIAL}


class IamRefused(Exception):
    """The vendor refused the action for good (4xx, unknown user, missing permission)."""


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def request_for(s: Session, row: ProposalRow, *, now: datetime) -> IamRequest | None:
    """The typed request for an approved proposal (None for kinds no IAM system executes, such as a
    threshold change). The subject user of a session or decision is the one the decision store holds."""
    kind = Kind(row.kind)
    action = ACTION_OF.get(kind)
    if action is None:
        return None
    p = row.payload
    approvers = tuple(s.scalars(select(ApprovalRow.principal).where(
        ApprovalRow.proposal_id == row.proposal_id, ApprovalRow.decision == "approve").order_by(ApprovalRow.id)))
    base: dict[str, Any] = {"idempotency_key": row.proposal_id, "proposal_id": row.proposal_id, "action": action,
                            "approvers": approvers, "reason": p.get("reason") or p.get("note") or ""}
    # the approval time, the same on every retry: an exception's window starts there (a retry never extends
    # it), and sessions older than it must be gone
    approved = datetime.fromtimestamp(row.decided_ms / 1000, UTC) if row.decided_ms is not None else now
    if kind is Kind.GRANT_EXCEPTION:
        return IamRequest(**base, user_id=p["user_id"], resource_id=p["resource_id"], window_start=approved,
                          window_end=approved + timedelta(hours=float(p["duration_hours"])))
    if kind is Kind.REVOKE_SESSION:
        user = s.scalars(select(DecisionRow.user_id).where(DecisionRow.session_id == p["session_id"])
                         .order_by(DecisionRow.ts_ms.desc()).limit(1)).first()
        return IamRequest(**base, user_id=user, session_id=p["session_id"], window_start=approved)
    d = s.get(DecisionRow, p["decision_id"])
    return IamRequest(**base, decision_id=p["decision_id"], user_id=d.user_id if d else None,
                      session_id=d.session_id if d else None, resource_id=d.resource_id if d else None,
                      window_start=approved)


def end_request(grant: IamRequest) -> IamRequest:
    """The request that removes ``grant``'s exception at its end."""
    return grant.model_copy(update={"idempotency_key": f"{grant.proposal_id}:end", "action": IamAction.END_EXCEPTION})


class VendorIam:
    """What the executor calls (:class:`agent.iam.IamAdapter`) when GLASSGATE_IAM names a vendor."""

    def __init__(self, *, vendor: IamAdapter, builtin: BuiltinIam, after_call: Callable[[str], None] | None = None):
        """``after_call(key)`` runs after the vendor applied an action and before its record is committed (a
        test hook, the ``after_iam_call`` failpoint; None by default)."""
        self.vendor, self.builtin, self.after_call = vendor, builtin, after_call
        self.name = vendor.name

    def apply(self, s: Session, proposal: ProposalRow, *, now: datetime) -> dict[str, Any]:
        req = request_for(s, proposal, now=now)
        mode = ActionMode.RECORD if req is None else self.vendor.capabilities.mode(req.action)
        if req is None or mode is ActionMode.RECORD:
            return {**self.builtin.apply(s, proposal, now=now), "iam_mode": ActionMode.RECORD.value}
        res = self.vendor.execute(req, now=now)
        if self.after_call is not None and res.status is IamStatus.APPLIED:
            self.after_call(req.idempotency_key)
        if res.status is IamStatus.TRANSIENT:  # the executor records the attempt and its next time
            raise IamUnavailable(res.error or "the IAM system is unavailable", retry_at=res.retry_at,
                                 detail=res.detail)
        record_attempt(s, key=req.idempotency_key, proposal_id=req.proposal_id, adapter=self.name,
                       action=req.action.value, status=res.status.value,
                       detail={**res.detail, **({"error": res.error} if res.error else {})}, now=now)
        if res.status is IamStatus.FAILED:
            raise IamRefused(res.error or "the IAM system refused the action")
        local = self.builtin.apply(s, proposal, now=now)  # glassgate's own view of the same effect
        if req.action is IamAction.GRANT_EXCEPTION and req.window_end is not None:
            self._schedule_end(s, req, due=req.window_end)
        return {**local, "iam_mode": mode.value, "iam_status": res.status.value, "iam": res.detail,
                "approvers": list(req.approvers),
                "window_end": None if req.window_end is None else req.window_end.astimezone(UTC).isoformat()}

    def withdraw(self, s: Session, proposal: ProposalRow, *, now: datetime) -> dict[str, Any] | None:
        """A grant refused because its window ended may still have reached the vendor before a crash: its
        removal is scheduled now (the adapter reads the membership first, so nothing is written when the
        grant never landed)."""
        req = request_for(s, proposal, now=now)
        if req is None or req.action is not IamAction.GRANT_EXCEPTION:
            return None
        if self.vendor.capabilities.mode(req.action) is ActionMode.RECORD:
            return None
        if s.get(IamExpiryRow, req.proposal_id) is not None:
            return None
        self._schedule_end(s, req, due=now)
        return {"scheduled": IamAction.END_EXCEPTION.value, "due": now.astimezone(UTC).isoformat()}

    def _schedule_end(self, s: Session, grant: IamRequest, *, due: datetime) -> None:
        end = end_request(grant)
        s.add(IamExpiryRow(proposal_id=grant.proposal_id, adapter=self.name, request=end.model_dump(mode="json"),
                           due_ms=_ms(due), status="pending", attempts=0, next_attempt_ms=None))
