"""The agent: a LangGraph state graph built by a factory with an injected checkpointer.

plan -> gather -> narrate -> verify -> [propose -> await_approval (interrupt) ...] -> end

The planner and narrator are chosen by configuration (offline or LLM) behind one seam
(:class:`agent.deps.AgentDeps`). Approval is one path for every action kind: the thread
stops at ``interrupt()`` and is resumed with ``Command(resume=...)`` by thread id; the
node re-runs from its top on resume, and everything it does after ``interrupt()`` is
idempotent (the proposal state machine refuses a second decision by the same person and
the executions table holds one row per proposal). The decision is committed first and the
action executed in a transaction of its own (``agent.proposals.execute_approved``), so a
crash in between leaves an approved proposal that the service's recovery sweep executes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.types import interrupt

from agent.approval import ApprovalError, Channel, Kind, Status
from agent.deps import AgentDeps
from agent.gather import gather
from agent.narrative import Audience, Evidence, Intent, Narrative
from agent.planner import plan as offline_plan
from agent.proposals import create, decide, execute_approved, record
from risk.audit import AuditKind
from risk.store.control import ProposalRow


class AgentState(TypedDict, total=False):
    question: str
    asked_by: str
    audience: str
    plan: dict[str, Any]
    planning: dict[str, Any]  # which planner answered, and why the LLM's plan fell back if it did
    exploration: dict[str, Any] | None  # the read-only tools a model called for a question outside the kinds
    evidence: dict[str, Any]
    narrative: dict[str, Any]
    verification: dict[str, Any]
    proposal: dict[str, Any] | None
    approval_error: dict[str, Any] | None


def build_graph(deps: AgentDeps, *, checkpointer: Any = None,
                before_execute: Callable[[str], None] | None = None) -> Any:
    """Compile a fresh graph over ``deps`` (tests build one per test). ``before_execute(proposal_id)`` runs
    between the committed approval and the IAM call (a test hook for fault injection; none by default)."""

    def plan_node(state: AgentState) -> dict[str, Any]:
        got = deps.planner.plan(state["question"], ctx=deps.tools)
        if got.fallback is not None:
            deps.on_fallback("planner", got.fallback.reason.value)
        return {"plan": got.plan.model_dump(mode="json"), "planning": got.report(), "proposal": None,
                "approval_error": None}

    def gather_node(state: AgentState) -> dict[str, Any]:
        from agent.planner import Plan

        p = Plan.model_validate(state["plan"])
        explore = getattr(deps.planner, "explore", None)  # an LLM planner may look facts up with read-only tools
        found = explore(state["question"], ctx=deps.tools) if p.intent is Intent.UNSUPPORTED and explore else None
        if found is not None:
            return {"evidence": found.evidence.model_dump(mode="json"), "exploration": {
                "tools_used": found.tools_used, "refused": found.refused,
                "fallback": found.fallback.model_dump(mode="json") if found.fallback else None}}
        ev = gather(deps.tools, p, state["question"])
        return {"evidence": ev.model_dump(mode="json"), "exploration": None}

    def narrate_node(state: AgentState) -> dict[str, Any]:
        ev = Evidence.model_validate(state["evidence"])
        audience = Audience(state.get("audience") or Audience.ANALYST)
        narrative, verification = deps.narrate(ev, audience)
        with deps.tools.sessions.begin() as s:
            deps.ledger.append(s, kind=AuditKind.NARRATIVE, subject_id=",".join(ev.decision_ids()[:5]) or ev.intent.value,
                               at=deps.clock(), payload={
                                   "question": state["question"], "asked_by": state.get("asked_by"),
                                   "audience": audience.value, "narrator": narrative.narrator, "text": narrative.text,
                                   "claims": [c.model_dump(mode="json") for c in narrative.claims],
                                   "verification": verification, "decision_ids": ev.decision_ids(),
                                   "planning": state.get("planning"), "exploration": state.get("exploration")})
        return {"narrative": narrative.model_dump(mode="json"), "verification": verification}

    def propose_node(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        ev = Evidence.model_validate(state["evidence"])
        payload = (ev.tuning or {}).get("proposal") or {}
        evidence = {k: v for k, v in (ev.tuning or {}).items() if k != "proposal"}
        with deps.tools.sessions.begin() as s:
            rec = create(s, kind=Kind.CHANGE_THRESHOLD, payload=payload, evidence=evidence,
                         requested_by=state.get("asked_by") or "anonymous", rules=deps.rules, ledger=deps.ledger,
                         clock=deps.clock, thread_id=config["configurable"].get("thread_id"))
        return {"proposal": rec.model_dump(mode="json")}

    def await_approval_node(state: AgentState) -> dict[str, Any]:
        pending = state.get("proposal") or {}
        pid = pending["proposal_id"]
        answer = interrupt({"proposal_id": pid, "kind": pending["kind"]})
        # Re-runs from here on every resume: the decision below is checked and idempotent.
        principal = deps.principals.get(answer.get("principal", ""))
        with deps.tools.sessions.begin() as s:
            try:
                if principal is None:
                    from agent.approval import Refusal

                    raise ApprovalError(Refusal.UNKNOWN_PRINCIPAL, f"{answer.get('principal')!r} is not a known "
                                        "principal; only principals in the configuration file can approve")
                rec = decide(s, proposal_id=pid, principal=principal, approve=bool(answer.get("approve")),
                             channel=Channel(answer.get("channel", "cli")), rules=deps.rules, ledger=deps.ledger,
                             clock=deps.clock, reason=answer.get("reason"), tier_of=deps.tier_of)
                error = None
            except ApprovalError as exc:
                s.rollback()
                error = {"reason": exc.reason.value, "message": str(exc)}
                rec = None
        if rec is not None and rec.status is Status.APPROVED:  # committed: now apply it, once, in this turn
            execute_approved(deps.tools.sessions, iam=deps.iam, ledger=deps.ledger, clock=deps.clock,
                             rules=deps.rules, proposal_id=pid, before_execute=before_execute)
            rec = None  # read again below: whoever executed it, the thread reports the outcome
        if rec is None:
            with deps.tools.sessions() as s:
                row = s.get(ProposalRow, pid)
                rec = record(s, row, deps.rules) if row is not None else None
        return {"proposal": rec.model_dump(mode="json") if rec else pending, "approval_error": error}

    def after_verify(state: AgentState) -> Literal["propose", "__end__"]:
        ev = state["evidence"]
        wants = ev["intent"] == Intent.TUNING.value and (ev.get("tuning") or {}).get("proposal")
        # A proposal needs the deterministic reading of the question to agree that it asks about tuning:
        # a language model that was talked into it cannot widen what the agent drafts.
        agreed = offline_plan(state["question"], users=set(), resources=set()).intent is Intent.TUNING
        return "propose" if wants and agreed else "__end__"

    def after_decision(state: AgentState) -> Literal["await_approval", "__end__"]:
        proposal = state.get("proposal") or {}
        return "await_approval" if proposal.get("status") == Status.PENDING.value else "__end__"

    g = StateGraph(AgentState)
    g.add_node("plan", plan_node)
    g.add_node("gather", gather_node)
    g.add_node("narrate", narrate_node)
    g.add_node("propose", propose_node)
    g.add_node("await_approval", await_approval_node)
    g.add_edge(START, "plan")
    g.add_edge("plan", "gather")
    g.add_edge("gather", "narrate")
    g.add_conditional_edges("narrate", after_verify)
    g.add_conditional_edges("propose", after_decision)
    g.add_conditional_edges("await_approval", after_decision)
    return g.compile(checkpointer=checkpointer)


def answer_of(state: dict[str, Any]) -> dict[str, Any]:
    """The `ask --json` contract from a graph state."""
    n = Narrative.model_validate(state["narrative"])
    ev = Evidence.model_validate(state["evidence"])
    v = state["verification"]
    tools = (state.get("exploration") or {}).get("tools_used") or []
    said = f"\n\n(Facts looked up with: {', '.join(dict.fromkeys(tools))}.)" if tools else ""  # our words
    return {"answer": n.text + said, "tools_used": tools, "claims": [c.model_dump(mode="json") for c in n.claims],
            "citations": [c.model_dump(mode="json") for c in n.citations], "decision_ids": ev.decision_ids(),
            "proposal": state.get("proposal"), "narrator": n.narrator, "verified": v["verified"],
            "verification_failures": v.get("failures", []), "intent": ev.intent.value,
            "fallback_from": v.get("fallback_from"), "narration": v.get("narration"), "planning": state.get("planning")}


__all__ = ["AgentState", "answer_of", "build_graph"]
