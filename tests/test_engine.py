"""The online decision path against real SQLite and PostgreSQL: stored, audited, idempotent, strict."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sqlalchemy import func, select

from risk.audit import AuditEntry, Ledger
from risk.catalog import FEATURE_NAMES
from risk.engine import DecisionEngine, IdempotencyConflict, Rejected
from risk.events import EventValidationError, parse_event
from risk.explain import feature_vector
from risk.features import batch_features, events_to_frame
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.store.schema import DecisionRow, ExplanationRow, ProfileRow, SessionRow, VerdictRow
from risk.synth import row_to_event


@pytest.fixture
def engine(db_url, trained, policy, tmp_path):
    db = make_engine(db_url)
    upgrade(db)
    ledger = Ledger(witness_path=tmp_path / "witness.json")
    with session_factory(db)() as s:
        ledger.init(s, ledger_id="test")  # the first witness (`glassgate audit init`)
    eng = DecisionEngine(sessions=session_factory(db), model=trained[0], policy=policy, ledger=ledger)
    yield eng
    db.dispose()


@pytest.fixture(scope="module")
def raw_events(small_world):
    ev = small_world.events
    users = ev["user"].unique()[:12]
    return [row_to_event(r) for r in ev[ev["user"].isin(users)].head(400).to_dict("records")]


def _counts(eng) -> dict[str, int]:
    with eng.sessions() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in
                (DecisionRow, ExplanationRow, ProfileRow, SessionRow, VerdictRow, AuditEntry)}


def test_score_stores_explains_and_audits(engine, raw_events):
    results = list(engine.score_many(raw_events[:150], chunk=40))
    assert all(not isinstance(r, Rejected) and r.created for r in results)
    c = _counts(engine)
    assert c["decisions"] == c["explanations"] == c["audit_log"] == 150
    for r in results:
        d, e = r.decision, r.explanation
        assert 0 <= d["risk"] <= 1 and d["outcome"] in ("allow", "step_up", "deny")
        assert abs(e["base_value"] + sum(f["contribution"] for f in e["factors"]) - e["margin"]) < 1e-6
        assert set(e["families"]) == {"identity", "device", "behavior", "network"}
        worse = {"allow": 0, "step_up": 1, "deny": 2}
        assert worse[d["outcome"]] == max(worse[d["threshold_outcome"]], worse[d["rule_floor"]])
    head = engine.checkpoint()
    assert head.size == 150
    with engine.sessions() as s:
        assert engine.ledger.verify(s).ok


def test_stored_features_equal_the_batch_path(engine, raw_events):
    """The serving path (with profiles persisted in the database between chunks) equals training's batch path."""
    results = list(engine.score_many(raw_events, chunk=37))
    online = np.array([feature_vector(r.explanation["factors"]) for r in results])
    batch = batch_features(events_to_frame([parse_event(e) for e in raw_events]))
    assert np.array_equal(online, batch, equal_nan=True), [
        FEATURE_NAMES[j] for j in range(len(FEATURE_NAMES)) if not np.array_equal(online[:, j], batch[:, j], equal_nan=True)]


def test_same_event_twice_returns_the_first_decision(engine, raw_events):
    first = engine.score(raw_events[0])
    before = _counts(engine)
    again = engine.score(copy.deepcopy(raw_events[0]))
    assert again.created is False and again.decision == first.decision and again.explanation == first.explanation
    assert _counts(engine) == before
    # Inside one batch too.
    out = list(engine.score_many([raw_events[1], raw_events[1]]))
    assert out[0].created and not out[1].created and out[0].decision == out[1].decision


def test_same_id_different_body_is_a_conflict_and_stores_nothing(engine, raw_events):
    engine.score(raw_events[0])
    before = _counts(engine)
    changed = copy.deepcopy(raw_events[0])
    changed["activity"]["bytes_out"] += 1
    with pytest.raises(IdempotencyConflict) as exc:
        engine.score(changed)
    assert exc.value.event_id == raw_events[0]["event_id"]
    assert _counts(engine) == before


def test_rejected_event_changes_nothing(engine, raw_events):
    engine.score(raw_events[0])
    before = _counts(engine)
    with engine.sessions() as s:
        profile_before = s.get(ProfileRow, raw_events[0]["user"]["id"]).state
    bad = copy.deepcopy(raw_events[1])
    bad["user"]["id"] = raw_events[0]["user"]["id"]
    bad["surprise"] = "x"
    bad["auth"]["failed_attempts_1h"] = -1
    other = next(e for e in raw_events[1:] if e["user"]["id"] != raw_events[0]["user"]["id"])
    out = list(engine.score_many([bad, other]))
    assert isinstance(out[0], Rejected) and isinstance(out[0].error, EventValidationError)
    assert set(out[0].error.fields) == {"surprise", "auth.failed_attempts_1h"}
    assert not isinstance(out[1], Rejected)
    after = _counts(engine)
    assert after["decisions"] == before["decisions"] + 1 and after["audit_log"] == before["audit_log"] + 1
    with engine.sessions() as s:
        assert s.get(ProfileRow, raw_events[0]["user"]["id"]).state == profile_before
        assert s.scalar(select(func.count()).select_from(DecisionRow).where(
            DecisionRow.event_id == bad["event_id"])) == 0


def test_decision_records_policy_and_rules(engine, raw_events, policy):
    tor = copy.deepcopy(raw_events[3])
    tor["event_id"] = "evt-tor-1"
    tor["network"]["is_tor"] = True
    tor["resource"] = {"id": "payroll-db", "kind": "database", "sensitivity": "restricted"}
    r = engine.score(tor)
    d = r.decision
    assert d["outcome"] == "deny" and d["policy_id"] == "POL-ACCESS-001" and d["threshold_scope"] == "tier:restricted"
    assert d["deny_at"] == policy.threshold_for(kind="database", sensitivity="restricted").deny_at
    assert "net-tor-deny" in {x["rule_id"] for x in d["rules"]}
    assert any("net-tor-deny" in c for c in r.explanation["crossed"])



def _signals(**kw):
    base = {name: 0.0 for name in FEATURE_NAMES} | {"mfa_strength": 4.0, "device_managed": 1.0, "device_compliant": 1.0,
                                                   "edr_running": 1.0, "disk_encrypted": 1.0}
    return base | {"resource.kind": "saas", "resource.sensitivity": "confidential", "user.privileged": False,
                   "activity.action": "read"} | kw


def test_decided_by_is_the_rule_exception_or_revocation_that_set_the_outcome(policy):
    from risk.engine import Override, decided_by_for
    from risk.policy import Outcome

    low = policy.decide(risk=0.01, signals=_signals())
    assert decided_by_for(low, Override(outcome=low.outcome, rule_floor=low.rule_floor)) == ("threshold", "threshold")
    bulk = policy.decide(risk=0.01, signals=_signals(bytes_out_mb=150.0))
    assert bulk.threshold_outcome is Outcome.ALLOW and bulk.outcome is Outcome.STEP_UP
    assert decided_by_for(bulk, Override(outcome=bulk.outcome, rule_floor=bulk.rule_floor)) == (
        "data-bulk-transfer-step-up", "rule")
    high = policy.decide(risk=0.99, signals=_signals(bytes_out_mb=150.0))  # the thresholds deny on their own
    assert decided_by_for(high, Override(outcome=high.outcome, rule_floor=high.rule_floor)) == ("threshold", "threshold")
    exc = Override(outcome=Outcome.ALLOW, rule_floor=Outcome.ALLOW, exception={"changed_outcome_from": "step_up"})
    assert decided_by_for(bulk, exc) == ("exception", "exception")
    rev = Override(outcome=Outcome.DENY, rule_floor=Outcome.DENY, revocation="prop-1")
    assert decided_by_for(low, rev) == ("revocation", "revocation")


def test_a_rule_decided_outcome_is_recorded_and_the_narrative_leads_with_it(engine, raw_events):
    from agent.narrative import Audience, Evidence, Intent
    from agent.narrator_offline import narrate

    bulk = copy.deepcopy(raw_events[5])
    bulk["event_id"] = "evt-bulk-read-1"
    bulk["activity"]["bytes_out"] = 150_000_000
    bulk["resource"] = {"id": "crm", "kind": "saas", "sensitivity": "confidential"}
    r = engine.score(bulk)
    d, e = r.decision, r.explanation
    assert d["outcome"] in ("step_up", "deny")
    rule_set_it = d["threshold_outcome"] == "allow"
    assert (e["decided_by"], e["decided_kind"]) == (
        ("data-bulk-transfer-step-up", "rule") if rule_set_it else ("threshold", "threshold"))
    text = narrate(Evidence(intent=Intent.WHY_DECISION, question="why?", decision=d, explanation=e),
                   Audience.ANALYST).text
    lead = "Rule data-bulk-transfer-step-up (step-up) decided this outcome, not the risk threshold"
    assert text.startswith(lead) == rule_set_it
