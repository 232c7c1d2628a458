"""Tuning is governed: evidence counts distinct analysts, and the drafted scope is the question's own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from agent.approval import ApprovalRules
from agent.deps import AgentDeps
from agent.graph import build_graph
from agent.iam import BuiltinIam
from agent.llm_types import PlanResult
from agent.narrative import Intent
from agent.planner import Plan
from agent.tuning import analyse
from risk.audit import Ledger
from risk.engine import DecisionEngine
from risk.store.control import ProposalRow
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.store.queries import add_verdict
from risk.synth import row_to_event
from tools.context import ToolContext


@pytest.fixture(scope="module")
def world(trained, policy, small_world, tmp_path_factory):
    home = tmp_path_factory.mktemp("tuning")
    db = make_engine(f"sqlite:///{home / 'glassgate.db'}")
    upgrade(db)
    sessions = session_factory(db)
    clock = lambda: datetime.fromtimestamp(float(small_world.events["ts"].max()) + 60, UTC)  # noqa: E731
    ledger = Ledger(witness_path=home / "w.json")
    eng = DecisionEngine(sessions=sessions, model=trained[0], policy=policy, ledger=ledger, clock=clock)
    results = list(eng.score_many([row_to_event(r) for r in small_world.events[trained[2].test].to_dict("records")],
                                  chunk=300))
    by_scope: dict[str, list[str]] = {}
    for r in results:
        d = r.decision
        if d["outcome"] == "step_up" and d["rule_floor"] == "allow" and d["threshold_scope"].startswith("tier:") \
                and d["threshold_scope"] != "tier:restricted":
            by_scope.setdefault(d["threshold_scope"], []).append(d["decision_id"])
    scope, ids = max(by_scope.items(), key=lambda kv: len(kv[1]))
    assert len(ids) >= 4, by_scope
    ctx = ToolContext(sessions=sessions, policy=policy, model=trained[0], clock=clock)
    rules = ApprovalRules.from_policy(policy)
    deps = AgentDeps(tools=ctx, rules=rules, ledger=ledger, iam=BuiltinIam(base_policy=policy, rules=rules), clock=clock)
    yield {"sessions": sessions, "ctx": ctx, "deps": deps, "scope": scope, "ids": ids}
    db.dispose()


def _label(world, analysts):
    with world["sessions"].begin() as s:
        for k, did in enumerate(world["ids"]):
            add_verdict(s, decision_id=did, verdict="benign", analyst=analysts[k % len(analysts)],
                        at="2026-11-14T00:00:00Z")


def test_many_verdicts_from_one_analyst_never_drive_a_loosening(world):
    _label(world, ["ana"])  # every cleared step-up, one person
    got = analyse(world["ctx"], scope=world["scope"], when="this month")
    assert got["counts"]["step_up"]["benign"] >= 4 and got["counts"]["step_up"]["benign_analysts"] == 1
    assert got["proposal"] is None and got["recommendation"] != "loosen"
    assert "1 distinct analyst" in got["summary"] and "fewer than 2 distinct analysts" in got["summary"]
    _label(world, ["ana", "sam"])  # a second analyst confirms half of them: now it is evidence
    got = analyse(world["ctx"], scope=world["scope"], when="this month")
    assert got["counts"]["step_up"]["benign_analysts"] == 2 and got["benign_analysts"] == 2
    assert got["recommendation"] == "loosen" and got["proposal"]["scope"] == world["scope"]
    assert "2 distinct analysts" in got["summary"]


def test_a_planner_cannot_choose_another_scope_than_the_question_names(world):
    _label(world, ["ana", "sam"])
    target = world["scope"]
    named = next(t for t in ("public", "internal", "confidential") if f"tier:{t}" != target)

    class Swapped:
        """A planner (a language model) that reads the question's intent right but answers another scope."""

        name = "llm:swapped-scope"

        def plan(self, question, *, ctx):
            return PlanResult(plan=Plan(intent=Intent.TUNING, scope=target, when="this month"), planner=self.name)

    d = world["deps"]
    graph = build_graph(AgentDeps(tools=d.tools, rules=d.rules, ledger=d.ledger, iam=d.iam, clock=d.clock,
                                  planner=Swapped()), checkpointer=None)
    with world["sessions"]() as s:
        before = s.scalar(select(func.count()).select_from(ProposalRow))
    state = graph.invoke({"question": f"are {named}-tier step-ups too strict this month?", "asked_by": "bob",
                          "can_propose": True}, {"configurable": {"thread_id": "swapped"}})
    assert state["evidence"]["tuning"]["proposal"]["scope"] == target, "the analysis alone would have drafted it"
    assert state.get("proposal") is None
    with world["sessions"]() as s:
        assert s.scalar(select(func.count()).select_from(ProposalRow)) == before
    # the question that names the scope does draft it
    state = graph.invoke({"question": f"are {target.split(':')[1]}-tier step-ups too strict this month?",
                          "asked_by": "bob", "can_propose": True}, {"configurable": {"thread_id": "named"}})
    assert state["proposal"] and state["proposal"]["payload"]["scope"] == target


def test_a_scope_without_thresholds_is_an_answer_not_a_crash(world):
    graph = build_graph(world["deps"], checkpointer=None)
    state = graph.invoke({"question": "are saas step-ups too strict?", "asked_by": "bob", "can_propose": True},
                         {"configurable": {"thread_id": "saas"}})
    assert state["evidence"]["intent"] == "tuning" and state.get("proposal") is None
    assert "kind:saas" in state["evidence"]["note"] and state["verification"]["verified"]


def test_an_unmapped_asker_can_ask_but_not_originate(world):
    """A chat user mapped to no principal gets the analysis, never a drafted proposal in their name."""
    from agent.approval import Principal
    from integrations.services.ask import ask
    from integrations.services.deps import ServiceDeps
    from integrations.settings import Settings

    _label(world, ["ana", "sam"])
    from langgraph.checkpoint.memory import InMemorySaver

    d = world["deps"]
    graph = build_graph(d, checkpointer=InMemorySaver())
    tier = world["scope"].split(":")[1]
    svc = ServiceDeps(settings=Settings(), sessions=world["sessions"], ledger=d.ledger, clock=d.clock,
                      policy=d.tools.policy, rules=d.rules, principals={"bob": Principal("bob", frozenset())},
                      tools=d.tools, engine=lambda: None, agent=lambda: d, graph=lambda: graph)
    out = ask(deps=svc, question=f"are {tier}-tier step-ups too strict this month?", asked_by="slack:UNOBODY1")
    assert out["intent"] == "tuning" and out["proposal"] is None
    out = ask(deps=svc, question=f"are {tier}-tier step-ups too strict this month?", asked_by="bob")
    assert out["proposal"] is not None and out["proposal"]["requested_by"] == "bob"
