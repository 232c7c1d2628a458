"""The one path for asking the agent and for deciding a proposal, shared by the CLI, the HTTP API and
Slack: whatever the channel, the same graph answers and the same approval rules decide.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from langgraph.types import Command

from agent.approval import ApprovalError, Channel, Principal, Refusal
from agent.gather import gather
from agent.graph import answer_of
from agent.narrative import Audience, Intent
from agent.planner import Plan
from agent.proposals import decide, expire_due
from integrations.runtime import Runtime
from risk.store.control import ProposalRow
from tools.registry import ToolNotFound

# One agent turn at a time per process: a graph turn writes its checkpoint and may draft a proposal, and
# the LLM classes keep per-call state on their instances.
_AGENT_LOCK = threading.Lock()


def new_thread_id(prefix: str = "ask") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ask(rt: Runtime, *, question: str, asked_by: str, audience: Audience = Audience.ANALYST,
        thread_id: str | None = None) -> dict[str, Any]:
    """One agent turn: the `ask --json` contract plus ``thread_id``."""
    tid = thread_id or new_thread_id()
    cfg = {"configurable": {"thread_id": tid}}
    with _AGENT_LOCK:
        rt.graph.invoke({"question": question, "asked_by": asked_by, "audience": audience.value}, cfg)
        out = answer_of(rt.graph.get_state(cfg).values)
    return {**out, "thread_id": tid}


def expire(rt: Runtime) -> None:
    with rt.sessions.begin() as s:
        expire_due(s, ledger=rt.ledger, clock=rt.clock)


def decide_proposal(rt: Runtime, *, proposal_id: str, principal: Principal, approve: bool, channel: Channel,
                    reason: str | None = None) -> dict[str, Any]:
    """Approve or reject a proposal as ``principal`` through ``channel``; the action runs once the approvals
    it needs are in. A proposal drafted by an agent thread that waits at its approval interrupt is decided
    by resuming that thread (so the thread sees the outcome); any other is decided directly. Either way
    the rules are the ones of ``agent.approval.check_entitled``. Raises ApprovalError, nothing changed."""
    expire(rt)
    with rt.sessions() as s:
        row = s.get(ProposalRow, proposal_id)
        if row is None:
            raise ApprovalError(Refusal.NOT_FOUND, f"no proposal {proposal_id!r}")
        thread, status = row.thread_id, row.status
    if thread and status == "pending":
        cfg = {"configurable": {"thread_id": thread}}
        with _AGENT_LOCK:
            if rt.graph.get_state(cfg).next == ("await_approval",):
                answer = {"principal": principal.id, "approve": approve, "channel": channel.value, "reason": reason}
                rt.graph.invoke(Command(resume=answer), cfg)
                values = rt.graph.get_state(cfg).values
                if values.get("approval_error"):
                    e = values["approval_error"]
                    raise ApprovalError(Refusal(e["reason"]), e["message"])
                rec: dict[str, Any] = values["proposal"]
                return rec
    with rt.sessions.begin() as s:
        return decide(s, proposal_id=proposal_id, principal=principal, approve=approve, channel=channel,
                      rules=rt.approval_rules, ledger=rt.ledger, clock=rt.clock, iam=rt.agent_deps.iam,
                      reason=reason, tier_of=rt.agent_deps.tier_of).model_dump(mode="json")


def explain_decision(rt: Runtime, *, decision_id: str, audience: Audience) -> dict[str, Any]:
    """The narrative of one decision for ``audience``, verified against its evidence (an LLM draft that
    fails is replaced by the deterministic one, and the failure is reported): the same gather, narrator
    and verifier as an agent turn, without the planner. Raises ToolNotFound for an unknown decision."""
    deps = rt.agent_deps
    question = f"Why was decision {decision_id} made?"
    ev = gather(deps.tools, Plan(intent=Intent.WHY_DECISION, decision_id=decision_id), question)
    if ev.decision is None:
        raise ToolNotFound("decision", decision_id)
    with _AGENT_LOCK:
        narrative, verification = deps.narrate(ev, audience)
    return {"decision_id": decision_id, "audience": audience.value, "text": narrative.text,
            "claims": [c.model_dump(mode="json") for c in narrative.claims],
            "citations": [c.model_dump(mode="json") for c in narrative.citations], "narrator": narrative.narrator,
            "decision_ids": ev.decision_ids(), "verified": verification["verified"],
            "verification_failures": verification.get("failures", []),
            "fallback_from": verification.get("fallback_from")}
