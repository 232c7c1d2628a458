"""The one approval function decides exactly the proposal it is named, and the executor trusts only the
approvals themselves: on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from sqlalchemy import select, update

from agent.approval import ApprovalRules, Channel, Kind, Principal, Refusal, Role, Status
from agent.deps import AgentDeps
from agent.graph import build_graph
from agent.iam import BuiltinIam
from agent.proposals import create
from integrations.services.deps import ServiceDeps
from integrations.services.proposals import Outcome, decide, read_proposal, sweep_approved
from integrations.settings import Settings
from risk.audit import AuditEntry, Ledger
from risk.store.control import ApprovalRow, ExceptionRow, ExecutionRow, ProposalRow
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from tools.context import ToolContext

PRINCIPALS = {p.id: p for p in (Principal("ana", frozenset({Role.ANALYST})), Principal("bob", frozenset({Role.POLICY_OWNER})),
                                Principal("priya", frozenset({Role.POLICY_OWNER})), Principal("dana", frozenset({Role.ADMIN})))}
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def svc(db_url, policy, tmp_path):
    db = make_engine(db_url)
    upgrade(db)
    sessions = session_factory(db)
    clock = Clock(T0)
    ledger = Ledger(witness_path=tmp_path / "w.json")
    rules = ApprovalRules.from_policy(policy)
    agent = AgentDeps(tools=ToolContext(sessions=sessions, policy=policy, model=None, clock=clock), rules=rules,
                      ledger=ledger, iam=BuiltinIam(base_policy=policy, rules=rules), clock=clock, principals=PRINCIPALS)
    graph = build_graph(agent, checkpointer=InMemorySaver())
    deps = ServiceDeps(settings=Settings(home=tmp_path), sessions=sessions, ledger=ledger, clock=clock, policy=policy,
                       rules=rules, principals=PRINCIPALS, tools=agent.tools, engine=lambda: None, agent=lambda: agent,
                       graph=lambda: graph)
    yield deps, graph, clock
    db.dispose()


def _threshold(deps, scope, step_up_at, *, thread=None, by="ana"):
    with deps.sessions.begin() as s:
        return create(s, kind=Kind.CHANGE_THRESHOLD, payload={"policy_id": "POL-ACCESS-001", "scope": scope,
                                                              "step_up_at": step_up_at, "deny_at": 0.9},
                      evidence={}, requested_by=by, rules=deps.rules, ledger=deps.ledger, clock=deps.clock,
                      thread_id=thread)


def _waiting_on(graph, cfg):
    state = graph.get_state(cfg)
    return state.next, [i.value["proposal_id"] for t in state.tasks for i in t.interrupts]


def _approvals(deps, pid):
    with deps.sessions() as s:
        return [(a.principal, a.decision) for a in s.scalars(select(ApprovalRow).where(ApprovalRow.proposal_id == pid))]


def test_approving_a_decides_a_even_when_its_thread_waits_on_b(svc):
    deps, graph, _ = svc
    a = _threshold(deps, "tier:internal", 0.65, thread="t-1")
    b = _threshold(deps, "tier:confidential", 0.45, thread="t-1")
    cfg = {"configurable": {"thread_id": "t-1"}}
    # the thread's second tuning question drafted B: it now waits on B, as the propose node leaves it
    graph.update_state(cfg, {"question": "are confidential-tier step-ups too strict?", "asked_by": "ana",
                             "proposal": b.model_dump(mode="json")}, as_node="propose")
    graph.invoke(None, cfg)
    assert _waiting_on(graph, cfg) == (("await_approval",), [b.proposal_id])

    first = decide(deps=deps, proposal_id=a.proposal_id, principal=PRINCIPALS["bob"], approve=True, channel=Channel.API)
    last = decide(deps=deps, proposal_id=a.proposal_id, principal=PRINCIPALS["priya"], approve=True,
                  channel=Channel.API)
    assert (first.outcome, last.outcome) == (Outcome.RECORDED, Outcome.APPLIED)
    assert last.proposal.proposal_id == a.proposal_id and last.proposal.result["scope"] == "tier:internal"
    assert not last.thread_reported, "the thread waits on B: not its to report"
    assert read_proposal(deps=deps, proposal_id=b.proposal_id).status is Status.PENDING
    assert _approvals(deps, b.proposal_id) == []
    assert _approvals(deps, a.proposal_id) == [("bob", "approve"), ("priya", "approve")]
    with deps.sessions() as s:
        approved = s.scalars(select(AuditEntry.subject_id).where(AuditEntry.kind == "approval")).all()
    assert approved == [a.proposal_id, a.proposal_id], "the ledger names the proposal approved"
    assert _waiting_on(graph, cfg) == (("await_approval",), [b.proposal_id])

    # resumed for a proposal it is not waiting on, the thread changes nothing and goes on waiting on its own
    graph.invoke(Command(resume={"proposal_id": a.proposal_id}), cfg)
    assert _waiting_on(graph, cfg) == (("await_approval",), [b.proposal_id])
    assert read_proposal(deps=deps, proposal_id=b.proposal_id).status is Status.PENDING

    # B decided by name: the thread reports it, and ends once B is applied
    mid = decide(deps=deps, proposal_id=b.proposal_id, principal=PRINCIPALS["dana"], approve=True, channel=Channel.API)
    assert mid.outcome is Outcome.RECORDED and mid.thread_reported
    assert _waiting_on(graph, cfg) == (("await_approval",), [b.proposal_id])
    end = decide(deps=deps, proposal_id=b.proposal_id, principal=PRINCIPALS["bob"], approve=True, channel=Channel.API)
    assert end.outcome is Outcome.APPLIED and end.thread_reported
    state = graph.get_state(cfg)
    assert not state.next and state.values["proposal"]["proposal_id"] == b.proposal_id
    assert state.values["proposal"]["status"] == "applied"


def test_refusals_are_data_and_change_nothing(svc):
    deps, _, _ = svc
    a = _threshold(deps, "tier:internal", 0.65)
    own = decide(deps=deps, proposal_id=a.proposal_id, principal=PRINCIPALS["ana"], approve=True, channel=Channel.API)
    assert own.outcome is Outcome.REFUSED and own.refusal is Refusal.SELF_APPROVAL
    ghost = decide(deps=deps, proposal_id=a.proposal_id, principal=Principal("mallory", frozenset({Role.POLICY_OWNER})),
                   approve=True, channel=Channel.API)
    assert ghost.refusal is Refusal.UNKNOWN_PRINCIPAL
    missing = decide(deps=deps, proposal_id="prop-nope", principal=PRINCIPALS["bob"], approve=True, channel=Channel.API)
    assert missing.refusal is Refusal.NOT_FOUND and missing.proposal is None
    assert _approvals(deps, a.proposal_id) == []


def test_an_ot_threshold_change_is_api_only_because_it_governs_restricted_ot_consoles(svc):
    deps, _, _ = svc
    with deps.sessions.begin() as s:
        p = create(s, kind=Kind.CHANGE_THRESHOLD, payload={"policy_id": "POL-OT-004", "scope": "kind:ot",
                                                           "step_up_at": 0.3, "deny_at": 0.6},
                   evidence={}, requested_by="ana", rules=deps.rules, ledger=deps.ledger, clock=deps.clock)
    got = decide(deps=deps, proposal_id=p.proposal_id, principal=PRINCIPALS["bob"], approve=True, channel=Channel.SLACK)
    assert got.outcome is Outcome.REFUSED and got.refusal is Refusal.CHANNEL_NOT_ALLOWED
    assert "restricted" in got.message
    ok = decide(deps=deps, proposal_id=p.proposal_id, principal=PRINCIPALS["bob"], approve=True, channel=Channel.API)
    assert ok.outcome is Outcome.RECORDED


def _exception(deps, hours=4.0):
    with deps.sessions.begin() as s:
        return create(s, kind=Kind.GRANT_EXCEPTION, payload={"user_id": "u1", "resource_id": "payroll-db",
                                                             "duration_hours": hours, "reason": "quarter close"},
                      evidence={}, requested_by="ana", rules=deps.rules, ledger=deps.ledger, clock=deps.clock)


def _set_status_approved(deps, pid):
    """What an attacker with write access to the proposals table does: no approval rows at all."""
    with deps.sessions.begin() as s:
        s.execute(update(ProposalRow).where(ProposalRow.proposal_id == pid)
                  .values(status="approved", decided_ms=int(T0.timestamp() * 1000)))


def test_a_status_row_alone_is_never_executed_by_the_sweep(svc):
    deps, _, _ = svc
    p = _exception(deps)
    _set_status_approved(deps, p.proposal_id)
    assert sweep_approved(deps=deps) == [p.proposal_id]
    rec = read_proposal(deps=deps, proposal_id=p.proposal_id)
    assert rec.status is Status.FAILED and rec.result["error"] == "not_eligible"
    assert rec.result["reason"] == "no_quorum"
    with deps.sessions() as s:
        assert s.scalars(select(ExceptionRow)).all() == [], "nothing reached the IAM adapter"
        action = s.scalars(select(AuditEntry).where(AuditEntry.kind == "action")).one()
        assert json.loads(action.payload)["status"] == "refused" and action.subject_id == p.proposal_id
    assert sweep_approved(deps=deps) == [], "refused once, and recorded: not retried"


@pytest.mark.parametrize("forged", ["requester", "no_roles", "unknown"])
def test_forged_approval_rows_are_not_counted(svc, forged):
    deps, _, _ = svc
    p = _exception(deps)
    who, roles = {"requester": ("ana", ["analyst"]), "no_roles": ("bob", None),
                  "unknown": ("mallory", ["policy_owner"])}[forged]
    with deps.sessions.begin() as s:
        s.add(ApprovalRow(proposal_id=p.proposal_id, principal=who, decision="approve", channel="api", reason=None,
                          at_ms=int(T0.timestamp() * 1000), roles=roles))
    _set_status_approved(deps, p.proposal_id)
    sweep_approved(deps=deps)
    rec = read_proposal(deps=deps, proposal_id=p.proposal_id)
    assert rec.status is Status.FAILED
    assert rec.result["reason"] == ("self_approval" if forged == "requester" else "no_quorum")
    with deps.sessions() as s:
        assert s.scalars(select(ExceptionRow)).all() == []


def test_an_exception_starts_at_approval_and_never_outlives_its_window(svc):
    deps, _, clock = svc
    late = _exception(deps, hours=4)
    got = decide(deps=deps, proposal_id=late.proposal_id, principal=PRINCIPALS["bob"], approve=True,
                 channel=Channel.API, reason="ok")
    assert got.outcome is Outcome.APPLIED
    with deps.sessions() as s:
        exc = s.scalars(select(ExceptionRow)).one()
    assert (exc.starts_ms, exc.ends_ms) == (int(T0.timestamp() * 1000), int((T0 + timedelta(hours=4)).timestamp() * 1000))

    # approved, then the process died before executing; the sweep runs after the approved window ended
    cut = _exception(deps, hours=2)
    from agent.proposals import decide as record_decision

    with deps.sessions.begin() as s:
        record_decision(s, proposal_id=cut.proposal_id, principal=PRINCIPALS["priya"], approve=True,
                        channel=Channel.API, rules=deps.rules, ledger=deps.ledger, clock=deps.clock)
    clock.t = T0 + timedelta(hours=3)
    assert sweep_approved(deps=deps) == [cut.proposal_id]
    rec = read_proposal(deps=deps, proposal_id=cut.proposal_id)
    assert rec.status is Status.FAILED and rec.result["reason"] == "window_ended"
    with deps.sessions() as s:
        assert len(s.scalars(select(ExceptionRow)).all()) == 1
        assert s.get(ExecutionRow, cut.proposal_id).status == "failed"


def test_builtin_iam_never_falls_back_to_the_requester(svc):
    deps, _, _ = svc
    p = _exception(deps)
    _set_status_approved(deps, p.proposal_id)
    iam = deps.agent().iam
    with deps.sessions.begin() as s, pytest.raises(PermissionError, match="no recorded approver"):
        iam.apply(s, s.get(ProposalRow, p.proposal_id), now=T0)
