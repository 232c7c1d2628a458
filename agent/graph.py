"""The agent: a LangGraph state graph built by a factory with an injected checkpointer.

plan -> gather -> narrate -> verify -> [propose -> await_approval (interrupt) ...] -> end

The planner and narrator are chosen by configuration (offline or LLM) behind one seam
(:class:`agent.deps.AgentDeps`). The graph never decides a proposal: deciding is the one approval
function of the service layer (``integrations.services.proposals.decide``), which decides exactly the
proposal it is named and executes it. The thread only waits at ``interrupt()`` and, when the service
resumes it with ``Command(resume={"proposal_id": ...})``, reports the recorded state of the proposal
it waits on. Resumed for any other proposal it changes nothing and goes on waiting for its own.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.types import interrupt

from agent.approval import Kind, Status
from agent.deps import AgentDeps
from agent.gather import gather
from agent.narrative import Audience, Evidence, Intent, Narrative
from agent.planner import plan as offline_plan
from agent.proposals import create, record
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
    can_propose: bool  # the asker is a configured principal (an unmapped chat user may ask, never originate)


def build_graph(deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    """Compile a fresh graph over ``deps`` (tests build one per test)."""

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
        # Only reports: the service decided (and executed) the proposal before resuming. A resume naming
        # another proposal is not ours to report; the thread goes on waiting on its own (after_decision).
        if not isinstance(answer, dict) or answer.get("proposal_id") != pid:
            return {}
        with deps.tools.sessions() as s:
            row = s.get(ProposalRow, pid)
            rec = record(s, row, deps.rules) if row is not None else None
        return {"proposal": rec.model_dump(mode="json") if rec else pending, "approval_error": None}

    def after_verify(state: AgentState) -> Literal["propose", "__end__"]:
        ev = state["evidence"]
        wants = ev["intent"] == Intent.TUNING.value and (ev.get("tuning") or {}).get("proposal")
        # A proposal needs the deterministic reading of the question to agree that it asks about tuning:
        # a language model that was talked into it cannot widen what the agent drafts.
        # The scope too: the change drafted must govern exactly the scope the question names, whatever a
        # planner answered ("are internal-tier denials too strict?" never drafts a public-tier change).
        reading = offline_plan(state["question"], users=set(), resources=set())
        drafted = ((ev.get("tuning") or {}).get("proposal") or {}).get("scope")
        agreed = reading.intent is Intent.TUNING and reading.scope == drafted
        return "propose" if wants and agreed and state.get("can_propose") else "__end__"

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
