"""Proposals, approvals and the built-in IAM adapter: the safety rule, end to end on both databases."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from agent.approval import ApprovalError, ApprovalRules, Channel, Kind, KindRule, Principal, Refusal, Role, Status
from agent.iam import BuiltinIam
from agent.proposals import PayloadError, create, decide, execute, expire_due
from risk.audit import AuditEntry, Ledger
from risk.engine import DecisionEngine
from risk.store.control import ApprovalRow, ExecutionRow, ProposalRow
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.synth import row_to_event

ALICE = Principal("alice.analyst", frozenset({Role.ANALYST}))
BOB = Principal("bob.owner", frozenset({Role.POLICY_OWNER}))
CAROL = Principal("carol.owner", frozenset({Role.POLICY_OWNER}))
DAN = Principal("dan.admin", frozenset({Role.ADMIN}))
INGEST = Principal("svc.ingest", frozenset({Role.INGEST}))


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def rules():
    return ApprovalRules(policy_id="POL-EXC-007", policy_version=1, default_expiry_minutes=60, kinds={
        Kind.CONFIRM_DENIAL: KindRule(frozenset({Role.ANALYST, Role.POLICY_OWNER}), 1, None, frozenset(), None),
        Kind.GRANT_EXCEPTION: KindRule(frozenset({Role.POLICY_OWNER}), 1, 72.0, frozenset(), "3-exceptions"),
        Kind.REVOKE_SESSION: KindRule(frozenset({Role.ANALYST, Role.POLICY_OWNER}), 1, None, frozenset(), None),
        Kind.CHANGE_THRESHOLD: KindRule(frozenset({Role.POLICY_OWNER, Role.ADMIN}), 2, None,
                                        frozenset({"restricted"}), None)})


@pytest.fixture
def loop(db_url, trained, policy, rules, tmp_path):
    db = make_engine(db_url)
    upgrade(db)
    clock = Clock(datetime(2026, 11, 29, 9, 0, tzinfo=UTC))
    sessions = session_factory(db)
    ledger = Ledger(witness_path=tmp_path / "w.json")
    with sessions() as s:
        ledger.init(s, ledger_id="test")  # the first witness (`glassgate audit init`)
    eng = DecisionEngine(sessions=sessions, model=trained[0], policy=policy, ledger=ledger, clock=clock)
    iam = BuiltinIam(base_policy=policy, rules=rules)
    yield sessions, eng, ledger, clock, iam
    db.dispose()


def _tier(payload):
    return payload["scope"].split(":", 1)[1] if payload.get("scope", "").startswith("tier:") else None


def _propose(loop, rules, kind, payload, by=ALICE):
    sessions, _, ledger, clock, _ = loop
    with sessions.begin() as s:
        return create(s, kind=kind, payload=payload, evidence={}, requested_by=by.id, rules=rules, ledger=ledger,
                      clock=clock)


def _decide(loop, rules, pid, who, approve=True, channel=Channel.CLI):
    sessions, _, ledger, clock, iam = loop
    with sessions.begin() as s:
        return decide(s, proposal_id=pid, principal=who, approve=approve, channel=channel, rules=rules,
                      ledger=ledger, clock=clock, iam=iam, tier_of=_tier)


def _counts(sessions):
    with sessions() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (ProposalRow, ApprovalRow, ExecutionRow, AuditEntry))


def _risky_event(small_world, resource=("payroll-db", "database", "restricted"), ts="2026-11-29T09:01:00Z"):
    row = small_world.events[small_world.events["scenario"] == "benign"].iloc[-1].to_dict()
    ev = row_to_event(row)
    ev["event_id"] = "evt-ctl-" + ev["event_id"]
    ev["timestamp"] = ts
    ev["resource"] = {"id": resource[0], "kind": resource[1], "sensitivity": resource[2]}
    # identity signals only (a stale SMS factor and a burst of failures): high risk by the model, no hard rule
    ev["auth"].update(mfa_method="sms", minutes_since_mfa=600, failed_attempts_1h=12)
    return ev


def test_exception_is_honoured_for_that_user_and_resource_only(loop, rules, small_world):
    sessions, eng, *_ = loop
    before = eng.score(_risky_event(small_world))
    assert before.decision["outcome"] != "allow" and before.decision["exception"] is None
    uid = before.decision["user_id"]
    p = _propose(loop, rules, Kind.GRANT_EXCEPTION,
                 {"user_id": uid, "resource_id": "payroll-db", "duration_hours": 8, "reason": "quarter close"})
    assert p.status is Status.PENDING
    done = _decide(loop, rules, p.proposal_id, BOB)
    assert done.status is Status.APPLIED and done.result["exception_id"].startswith("exc-")
    ev = _risky_event(small_world)
    ev["event_id"] += "-2"
    after = eng.score(ev).decision
    assert after["outcome"] == "allow" and after["exception"]["changed_outcome_from"] == before.decision["outcome"]
    assert after["exception"]["policy_id"] == "POL-EXC-007" and after["exception"]["section"] == "3-exceptions"
    other = _risky_event(small_world, ("hr-db", "database", "restricted"))
    other["event_id"] += "-3"
    assert eng.score(other).decision["outcome"] != "allow", "only the named resource"
    tor = _risky_event(small_world)
    tor["event_id"] += "-tor"
    tor["network"]["is_tor"] = True
    d = eng.score(tor)
    assert d.decision["outcome"] == "deny", "an exception never overrides a hard deny rule"
    assert any("does not override a hard deny rule" in c for c in d.explanation["crossed"])
    clock = loop[3]
    clock.t += timedelta(hours=9)
    late = _risky_event(small_world)
    late["event_id"] += "-late"
    late["timestamp"] = clock.t.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert eng.score(late).decision["exception"] is None, "time-boxed"


def test_revoked_session_denies_every_later_event(loop, rules, small_world):
    sessions, eng, *_ = loop
    ev = row_to_event(small_world.events[small_world.events["scenario"] == "benign"].iloc[-5].to_dict())
    ev["timestamp"] = "2026-11-29T08:59:00Z"
    assert eng.score(ev).decision["outcome"] == "allow"
    p = _propose(loop, rules, Kind.REVOKE_SESSION, {"session_id": ev["session_id"], "reason": "token theft suspected"})
    assert _decide(loop, rules, p.proposal_id, BOB).status is Status.APPLIED
    later = copy.deepcopy(ev)
    later["event_id"] += "-after"
    later["timestamp"] = "2026-11-29T09:05:00Z"
    d = eng.score(later)
    assert d.decision["outcome"] == "deny"
    assert {"rule_id": "session-revoked", "policy_id": "POL-SES-006"}.items() <= d.decision["rules"][-1].items()
    assert d.explanation["counterfactuals"] == [] and "new sign-in" in d.explanation["counterfactual_note"]


def test_threshold_change_needs_two_distinct_entitled_approvers_over_the_api(loop, rules, policy):
    sessions, eng, *_ = loop
    p = _propose(loop, rules, Kind.CHANGE_THRESHOLD,
                 {"policy_id": "POL-ACCESS-001", "scope": "tier:restricted", "step_up_at": 0.3, "deny_at": 0.7}, by=BOB)
    before = _counts(sessions)
    with pytest.raises(ApprovalError) as exc:
        _decide(loop, rules, p.proposal_id, CAROL, channel=Channel.SLACK)
    assert exc.value.reason is Refusal.CHANNEL_NOT_ALLOWED and _counts(sessions) == before
    first = _decide(loop, rules, p.proposal_id, CAROL, channel=Channel.API)
    assert first.status is Status.PENDING and len(first.approvals) == 1
    with pytest.raises(ApprovalError) as exc:
        _decide(loop, rules, p.proposal_id, CAROL, channel=Channel.API)
    assert exc.value.reason is Refusal.ALREADY_DECIDED
    done = _decide(loop, rules, p.proposal_id, DAN, channel=Channel.API)
    assert done.status is Status.APPLIED and done.result["version"] == policy.get("POL-ACCESS-001").version + 1
    with sessions() as s:
        eng._refresh_policy(s)
    t = eng.policy.threshold_for(kind="database", sensitivity="restricted")
    assert (t.step_up_at, t.deny_at, t.policy_version) == (0.3, 0.7, done.result["version"])


@pytest.mark.parametrize(("who", "reason"), [(ALICE, Refusal.SELF_APPROVAL), (INGEST, Refusal.NOT_ENTITLED),
                                             (ALICE.__class__("eve", frozenset({Role.ANALYST})), Refusal.NOT_ENTITLED)])
def test_refusals_change_nothing(loop, rules, who, reason):
    sessions, *_ = loop
    p = _propose(loop, rules, Kind.GRANT_EXCEPTION,
                 {"user_id": "frank", "resource_id": "crm", "duration_hours": 2, "reason": "customer visit"})
    before = _counts(sessions)
    with pytest.raises(ApprovalError) as exc:
        _decide(loop, rules, p.proposal_id, who)
    assert exc.value.reason is reason and _counts(sessions) == before


def test_approving_twice_or_after_expiry_fails_clearly(loop, rules):
    sessions, _, ledger, clock, _ = loop
    p = _propose(loop, rules, Kind.REVOKE_SESSION, {"session_id": "s-x", "reason": "lost laptop"})
    _decide(loop, rules, p.proposal_id, BOB)
    with pytest.raises(ApprovalError) as exc:
        _decide(loop, rules, p.proposal_id, CAROL)
    assert exc.value.reason is Refusal.NOT_PENDING and "applied" in str(exc.value)
    q = _propose(loop, rules, Kind.REVOKE_SESSION, {"session_id": "s-y", "reason": "lost laptop"})
    clock.t += timedelta(minutes=61)
    before = _counts(sessions)
    with pytest.raises(ApprovalError) as exc:
        _decide(loop, rules, q.proposal_id, BOB)
    assert exc.value.reason is Refusal.EXPIRED and _counts(sessions) == before
    with sessions.begin() as s:
        assert expire_due(s, ledger=ledger, clock=clock) == 1
        assert s.get(ProposalRow, q.proposal_id).status == Status.EXPIRED.value
    with pytest.raises(ApprovalError) as exc:
        _decide(loop, rules, "prop-nope", BOB)
    assert exc.value.reason is Refusal.NOT_FOUND


def test_concurrent_approvals_execute_exactly_once(loop, rules):
    sessions, _, ledger, clock, iam = loop
    p = _propose(loop, rules, Kind.REVOKE_SESSION, {"session_id": "s-race", "reason": "token replay"})
    outcomes: list[object] = []

    def approve(who):
        try:
            outcomes.append(_decide(loop, rules, p.proposal_id, who).status)
        except ApprovalError as e:
            outcomes.append(e.reason)

    threads = [threading.Thread(target=approve, args=(w,)) for w in (BOB, CAROL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcomes)) == sorted([str(Status.APPLIED), str(Refusal.NOT_PENDING)])
    with sessions.begin() as s:
        row = s.get(ProposalRow, p.proposal_id)
        execute(s, row=row, iam=iam, ledger=ledger, clock=clock, rules=rules)  # a replayed resume does nothing
        assert s.scalar(select(func.count()).select_from(ExecutionRow)) == 1


def test_payload_is_validated(loop, rules):
    with pytest.raises(PayloadError) as exc:
        _propose(loop, rules, Kind.GRANT_EXCEPTION,
                 {"user_id": "frank", "resource_id": "crm", "duration_hours": 500, "reason": "long trip"})
    assert exc.value.fields == ["duration_hours"] and "at most 72 hours" in str(exc.value)
    with pytest.raises(PayloadError) as exc:
        _propose(loop, rules, Kind.REVOKE_SESSION, {"session_id": "s-1", "reason": "x" * 5, "also": "approve"})
    assert exc.value.fields == ["also"]


def test_everything_is_audited(loop, rules):
    sessions, _, ledger, *_ = loop
    p = _propose(loop, rules, Kind.CONFIRM_DENIAL, {"decision_id": "dec-missing"})
    res = _decide(loop, rules, p.proposal_id, BOB)
    assert res.status is Status.FAILED and "dec-missing" in res.result["detail"]
    with sessions() as s:
        kinds = [e.kind for e in ledger.entries(s)]
        assert kinds == ["proposal", "approval", "action"]
        assert ledger.verify(s).ok


def test_the_propose_tool_drafts_for_the_authenticated_caller_only(loop, rules, policy):
    from dataclasses import replace

    from agent.proposals import StoreProposer
    from tools.context import ToolContext
    from tools.registry import ToolInputError, ToolUnavailable, call_tool

    sessions, _, ledger, clock, _ = loop
    ctx = ToolContext(sessions=sessions, policy=policy, clock=clock,
                      proposer=StoreProposer(sessions=sessions, rules=rules, ledger=ledger, clock=clock))
    args = {"kind": "revoke_session", "payload": {"session_id": "s-77", "reason": "stolen laptop"}}
    with pytest.raises(ToolUnavailable):
        call_tool(ctx, "propose_action", args)  # nobody authenticated: nothing drafted
    as_ana = replace(ctx, principal="alice.analyst")
    out = call_tool(as_ana, "propose_action", args)
    assert out.proposal["status"] == "pending" and out.proposal["requested_by"] == "alice.analyst"
    with pytest.raises(ToolInputError) as exc:
        call_tool(as_ana, "propose_action", {"kind": "grant_exception", "payload": {
            "user_id": "frank", "resource_id": "crm", "duration_hours": 400, "reason": "trip"}})
    assert exc.value.fields == ["payload.duration_hours"]
    with pytest.raises(ToolInputError) as exc:
        call_tool(as_ana, "propose_action", {**args, "requested_by": "bob.owner"})
    assert exc.value.fields == ["requested_by"], "the requester is the caller, never an argument"
    with pytest.raises(ApprovalError) as err:
        _decide(loop, rules, out.proposal["proposal_id"], ALICE)
    assert err.value.reason is Refusal.SELF_APPROVAL


class _FlakyIam:
    """The built-in adapter behind an IAM system that is away for the first ``outages`` calls."""

    name = "builtin"

    def __init__(self, inner, outages: int):
        self.inner, self.outages, self.calls = inner, outages, 0

    def apply(self, s, proposal, *, now):
        from agent.iam import IamUnavailable

        self.calls += 1
        if self.calls <= self.outages:
            raise IamUnavailable("503 from the IAM system")
        return self.inner.apply(s, proposal, now=now)


def test_a_transient_iam_failure_leaves_the_proposal_approved_and_the_sweep_applies_it_once(loop, rules):
    from agent.proposals import approved_without_execution, execute_approved

    sessions, _, ledger, clock, iam = loop
    flaky = _FlakyIam(iam, outages=2)
    p = _propose(loop, rules, Kind.GRANT_EXCEPTION,
                 {"user_id": "u1", "resource_id": "payroll-db", "duration_hours": 4, "reason": "quarter close"})
    with sessions.begin() as s:  # the approval commits on its own; execution is the next step
        rec = decide(s, proposal_id=p.proposal_id, principal=BOB, approve=True, channel=Channel.API, rules=rules,
                     ledger=ledger, clock=clock, tier_of=_tier)
    assert rec.status is Status.APPROVED
    for attempt in (1, 2):  # the IAM system is away: nothing recorded, still approved, still due
        assert execute_approved(sessions, iam=flaky, ledger=ledger, clock=clock, rules=rules) == []
        with sessions() as s:
            assert s.get(ProposalRow, p.proposal_id).status == Status.APPROVED.value
            assert s.get(ExecutionRow, p.proposal_id) is None
            assert approved_without_execution(s) == [p.proposal_id]
        assert flaky.calls == attempt
    (done,) = execute_approved(sessions, iam=flaky, ledger=ledger, clock=clock, rules=rules)
    assert done.status is Status.APPLIED and flaky.calls == 3
    assert execute_approved(sessions, iam=flaky, ledger=ledger, clock=clock, rules=rules) == []
    assert flaky.calls == 3  # applied once
    with sessions() as s:
        assert s.get(ExecutionRow, p.proposal_id).status == "applied"


def test_a_final_iam_failure_marks_the_proposal_failed_with_the_error(loop, rules):
    from agent.proposals import execute_approved

    sessions, _, ledger, clock, _ = loop

    class Broken:
        name = "builtin"

        def apply(self, s, proposal, *, now):
            raise PermissionError("the service account may not grant exceptions")

    p = _propose(loop, rules, Kind.GRANT_EXCEPTION,
                 {"user_id": "u2", "resource_id": "payroll-db", "duration_hours": 4, "reason": "quarter close"})
    with sessions.begin() as s:
        decide(s, proposal_id=p.proposal_id, principal=BOB, approve=True, channel=Channel.API, rules=rules,
               ledger=ledger, clock=clock, tier_of=_tier)
    (done,) = execute_approved(sessions, iam=Broken(), ledger=ledger, clock=clock, rules=rules)
    assert done.status is Status.FAILED and "may not grant" in done.result["detail"]
    assert execute_approved(sessions, iam=Broken(), ledger=ledger, clock=clock, rules=rules) == []
