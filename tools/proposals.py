"""Drafting an action for human approval. Drafting changes nothing in the IAM system."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.context import ToolContext
from tools.errors import ToolInputError, ToolUnavailable
from tools.records import ToolInput


class ProposeActionInput(ToolInput):
    kind: Literal["confirm_denial", "grant_exception", "revoke_session", "change_threshold"] = Field(
        description="The action to draft.")
    payload: dict[str, Any] = Field(description=(
        "confirm_denial: {decision_id, note?}; grant_exception: {user_id, resource_id, duration_hours, reason}; "
        "revoke_session: {session_id, reason}; change_threshold: {policy_id, scope, step_up_at, deny_at}."))
    evidence: dict[str, Any] = Field(default_factory=dict, description="What supports it (decision ids, replay).")


class ProposeActionOutput(BaseModel):
    proposal: dict[str, Any] = Field(description="The pending proposal record: id, kind, status, expiry, approvals needed.")


def propose_action(ctx: ToolContext, args: ProposeActionInput) -> ProposeActionOutput:
    """Draft an action (confirm a denial, a time-boxed exception, revoke a session, change a threshold) for a
    human to approve. Use it only when the person asking requests the action; it applies nothing by itself."""
    if ctx.proposer is None or ctx.principal is None:
        raise ToolUnavailable("propose_action needs an authenticated caller and the proposal store")
    try:
        rec = ctx.proposer.propose(kind=args.kind, payload=args.payload, evidence=args.evidence,
                                   requested_by=ctx.principal)
    except ValueError as exc:  # the store's payload errors carry the bad fields
        fields = getattr(exc, "fields", None) or ["payload"]
        raise ToolInputError.one("propose_action", "payload." + fields[0], str(exc)) from None
    return ProposeActionOutput(proposal=rec)
