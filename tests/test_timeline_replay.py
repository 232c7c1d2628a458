"""Session timelines add up; threshold replay equals a brute-force recount."""

from __future__ import annotations

import numpy as np
import pytest

from risk.audit import Ledger
from risk.engine import DecisionEngine, decision_record
from risk.policy import outcome_for
from risk.replay import OUTCOMES, replay
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.store.queries import add_verdict, replay_frame, session_decisions
from risk.synth import row_to_event
from risk.timeline import build_timeline

RANK = {o: i for i, o in enumerate(OUTCOMES)}


@pytest.fixture
def scored(db_url, trained, policy, small_world, tmp_path):
    """The small world's later days decided online, with a few analyst verdicts."""
    db = make_engine(db_url)
    upgrade(db)
    eng = DecisionEngine(sessions=session_factory(db), model=trained[0], policy=policy,
                         ledger=Ledger(witness_path=tmp_path / "w.json"))
    ev = small_world.events
    later = ev[trained[2].test]
    pick = later[later["scenario"].isin(["posture_degraded", "impossible_travel"])]["session"].unique()[:6]
    rows = ev[ev["session"].isin(pick) | ev.index.isin(later.index[:500])]
    results = list(eng.score_many([row_to_event(r) for r in rows.to_dict("records")], chunk=100))
    with eng.sessions.begin() as s:
        for k, r in enumerate(results[:120]):
            if r.decision["outcome"] != "allow" or k % 3 == 0:
                add_verdict(s, decision_id=r.decision["decision_id"], verdict="malicious" if k % 2 else "benign",
                            analyst="t", at="2026-11-29T00:00:00Z", attack_type="token_replay" if k % 2 else None)
    yield eng, rows, results
    db.dispose()


def test_timeline_deltas_add_up_to_the_risk_change(scored):
    eng, rows, _ = scored
    sessions = rows[rows["scenario"] == "posture_degraded"]["session"].unique()
    assert len(sessions)
    with eng.sessions() as s:
        for sid in sessions:
            items = [({**decision_record(d), "event": d.event}, e.body) for d, e in session_decisions(s, sid)]
            t = build_timeline(sid, items)
            assert [st.timestamp for st in t.steps] == sorted(st.timestamp for st in t.steps)
            for prev, st in zip(t.steps, t.steps[1:], strict=False):
                assert sum(st.contribution_deltas.values()) + st.base_delta == pytest.approx(st.risk_delta, abs=1e-9)
                assert st.risk_delta == pytest.approx(st.risk - prev.risk, abs=1e-12)
            lost = [st for st in t.steps if any(c.feature == "posture_drop_in_session" for c in st.changes)]
            assert lost, "the step where posture was lost is shown"
            assert "posture controls lost since session start" in " ".join(c.label for c in lost[0].changes)


def _brute(frame, step_up_at, deny_at):
    m = np.zeros((3, 3), dtype=int)
    for r, o, f in zip(frame["risk"], frame["outcome"], frame["rule_floor"], strict=True):
        after = max(RANK[outcome_for(float(r), step_up_at, deny_at).value], int(f))
        m[int(o), after] += 1
    return m


@pytest.mark.parametrize(("step_up_at", "deny_at"), [(0.25, 0.8), (0.05, 0.3), (0.6, 0.61)])
def test_replay_equals_brute_force_on_the_store(scored, step_up_at, deny_at):
    eng, _, results = scored
    scope = "tier:restricted"
    with eng.sessions() as s:
        frame = replay_frame(s, policy_id="POL-ACCESS-001", scope=scope)
    stored = sum(1 for r in results if r.decision["threshold_scope"] == scope and r.decision["policy_id"] == "POL-ACCESS-001")
    assert len(frame["risk"]) == stored > 20
    res = replay(frame, policy_id="POL-ACCESS-001", scope=scope, step_up_at=step_up_at, deny_at=deny_at)
    assert np.array_equal(np.array(res.overall.matrix), _brute(frame, step_up_at, deny_at))
    assert sum(t.total for t in res.by_verdict.values()) == res.overall.total
    mal = frame["verdict"] == 1
    sub = {k: v[mal] for k, v in frame.items()}
    assert np.array_equal(np.array(res.by_verdict["malicious"].matrix), _brute(sub, step_up_at, deny_at))


def test_replay_with_current_thresholds_changes_nothing(scored, policy):
    eng, _, _ = scored
    t = policy.threshold_for(kind="database", sensitivity="restricted")
    with eng.sessions() as s:
        frame = replay_frame(s, policy_id=t.policy_id, scope=t.scope)
    res = replay(frame, policy_id=t.policy_id, scope=t.scope, step_up_at=t.step_up_at, deny_at=t.deny_at)
    assert res.overall.changed == 0


def test_replay_vectorised_on_random_frames():
    rng = np.random.default_rng(3)
    n = 20_000
    risk = rng.random(n)
    floor = rng.choice(3, n, p=[0.9, 0.07, 0.03]).astype(np.int8)
    before = np.maximum(np.where(risk >= 0.6, 2, np.where(risk >= 0.25, 1, 0)), floor).astype(np.int8)
    frame = {"risk": risk, "outcome": before, "rule_floor": floor, "verdict": rng.choice(3, n).astype(np.int8),
             "attack_type": rng.choice(np.array(["", "bulk_export", "mfa_fatigue"], dtype=object), n)}
    res = replay(frame, policy_id="P", scope="tier:restricted", step_up_at=0.3, deny_at=0.75)
    assert np.array_equal(np.array(res.overall.matrix), _brute(frame, 0.3, 0.75))
    released = int(np.sum((frame["verdict"] == 2) & (before == 2) &
                          (np.maximum(np.where(risk >= 0.75, 2, np.where(risk >= 0.3, 1, 0)), floor) < 2)))
    assert res.benign_denials_released == released
    assert set(res.by_attack_type) == {"bulk_export", "mfa_fatigue"}
    with pytest.raises(ValueError, match="step_up_at < deny_at"):
        replay(frame, policy_id="P", scope="s", step_up_at=0.8, deny_at=0.5)


def _step(i: int, *, outcome: str, risk: float, hour: float, rules=(), exception=None, scope="tier:internal",
          threshold_outcome: str | None = None, step_up_at=0.6, deny_at=0.9, resource="mail"):
    d = {"decision_id": f"d{i}", "event_id": f"e{i}", "timestamp": f"2026-11-29T10:{i:02d}:00Z", "resource_id": resource,
         "user_id": "alice", "outcome": outcome, "risk": risk, "rules": list(rules), "exception": exception,
         "threshold_scope": scope, "threshold_outcome": threshold_outcome or outcome, "step_up_at": step_up_at,
         "deny_at": deny_at, "event": {"device": {"id": "lt-1"}}}
    e = {"base_risk": 0.05, "factors": [
        {"feature": "hour_unusualness", "points": risk - 0.05, "label": "unusualness of this hour", "display": f"{hour:.0%}"}]}
    return d, e


REVOKED = {"rule_id": "session-revoked", "effect": "deny", "policy_id": "POL-SES-006", "section": "4-revoked-sessions",
           "description": "The session was revoked; every later event in it is denied."}


def test_a_rule_that_began_to_apply_is_credited_before_a_drifting_signal():
    t = build_timeline("s-1", [_step(0, outcome="allow", risk=0.10, hour=0.74),
                               _step(1, outcome="deny", risk=0.0999, hour=0.73, rules=[REVOKED], threshold_outcome="allow")])
    s = t.steps[1]
    assert s.outcome_changed and s.cause == "rule"
    assert [(r.rule_id, r.applies) for r in s.rule_changes] == [("session-revoked", True)]
    assert "session-revoked" in s.summary and "POL-SES-006" in s.summary and "unusualness" not in s.summary
    assert s.changes and s.changes[0].feature == "hour_unusualness"  # the drift is still listed, just not credited


def test_exception_and_scope_changes_are_named_and_plain_signal_changes_stay_signals():
    exc = {"exception_id": "x1", "ends_at": "2026-11-29T18:00:00Z"}
    t = build_timeline("s-2", [
        _step(0, outcome="step_up", risk=0.7, hour=0.5),
        _step(1, outcome="allow", risk=0.7, hour=0.5, exception=exc, threshold_outcome="step_up"),
        _step(2, outcome="step_up", risk=0.7, hour=0.5, exception=exc, scope="tier:restricted", resource="payroll-db",
              step_up_at=0.5, deny_at=0.8, threshold_outcome="step_up"),
        _step(3, outcome="deny", risk=0.85, hour=0.9, exception=exc, scope="tier:restricted", resource="payroll-db",
              step_up_at=0.5, deny_at=0.8)])
    assert t.steps[1].cause == "exception" and t.steps[1].exception_change == "began"
    assert "exception" in t.steps[1].summary
    assert t.steps[2].scope_change == "tier:internal -> tier:restricted"
    assert t.steps[3].cause == "signals" and "unusualness of this hour" in t.steps[3].summary
