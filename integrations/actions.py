"""Deprecated: kept only so that code written against it keeps importing; use :mod:`integrations.services`.

Every function here delegates to the service layer (``integrations.services.ask`` and
``integrations.services.proposals.decide``, the one approval function); nothing is decided here.
"""

from __future__ import annotations

from typing import Any

from agent.approval import ApprovalError, Channel, Principal
from agent.narrative import Audience
from integrations.runtime import Runtime
from integrations.services import ask as _ask
from integrations.services import proposals as _proposals
from integrations.services.ask import new_thread_id
from integrations.services.deps import ServiceDeps
from integrations.services.proposals import Outcome

__all__ = ["ask", "decide_proposal", "explain_decision", "new_thread_id"]


def _deps(rt: Runtime) -> ServiceDeps:
    got = rt.__dict__.get("_service_deps")
    if got is None:
        got = rt.__dict__["_service_deps"] = ServiceDeps.from_runtime(rt)
    return got  # type: ignore[no-any-return]


def ask(rt: Runtime, *, question: str, asked_by: str, audience: Audience = Audience.ANALYST,
        thread_id: str | None = None) -> dict[str, Any]:
    """Deprecated: :func:`integrations.services.ask.ask`."""
    return _ask.ask(deps=_deps(rt), question=question, asked_by=asked_by, audience=audience, thread_id=thread_id)


def decide_proposal(rt: Runtime, *, proposal_id: str, principal: Principal, approve: bool, channel: Channel,
                    reason: str | None = None) -> dict[str, Any]:
    """Deprecated: :func:`integrations.services.proposals.decide` (raises ApprovalError on a refusal)."""
    got = _proposals.decide(deps=_deps(rt), proposal_id=proposal_id, principal=principal, approve=approve,
                            channel=channel, reason=reason)
    if got.outcome is Outcome.REFUSED:
        assert got.refusal is not None
        raise ApprovalError(got.refusal, got.message or got.refusal.value)
    assert got.proposal is not None
    return got.proposal.model_dump(mode="json")


def explain_decision(rt: Runtime, *, decision_id: str, audience: Audience) -> dict[str, Any]:
    """Deprecated: :func:`integrations.services.ask.explain_decision`."""
    return _ask.explain_decision(deps=_deps(rt), decision_id=decision_id, audience=audience).model_dump(mode="json")
