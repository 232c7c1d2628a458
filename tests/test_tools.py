"""The typed tools, against a real scored store: facts checked against direct SQL and the risk core."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import BaseModel
from sqlalchemy import select, text

from risk.audit import Ledger
from risk.counterfactual import ACTIONS
from risk.engine import DecisionEngine, decision_record
from risk.events import ResourceKind, Sensitivity
from risk.replay import replay
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.store.queries import add_verdict, replay_frame, session_decisions
from risk.store.schema import DecisionRow, ExplanationRow
from risk.synth import row_to_event
from risk.timeline import build_timeline
from tools.context import ToolContext
from tools.decisions import SessionTimelineInput
from tools.errors import BadField
from tools.records import Scope
from tools.registry import (
    REGISTRY,
    Tool,
    ToolInputError,
    ToolNotFound,
    ToolUnavailable,
    UnknownTool,
    call_tool,
    tool_specs,
)
from tools.whatif import ActionId
from tools.when import resolve_when

NOW = datetime(2026, 11, 11, 14, 30, tzinfo=UTC)  # a Wednesday afternoon, inside the decided days
Z = UTC


def t(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


UTC_WINDOWS = {
    "this morning": (t(11, 6), t(11, 12)),
    "this afternoon": (t(11, 12), t(11, 18)),
    "this evening": (t(11, 18), t(12, 0)),
    "today": (t(11, 0), t(12, 0)),
    "yesterday": (t(10, 0), t(11, 0)),
    "last hour": (t(11, 13, 30), t(11, 14, 30)),
    "last 24 hours": (t(10, 14, 30), t(11, 14, 30)),
    "last 3 hours": (t(11, 11, 30), t(11, 14, 30)),
    "this week": (t(9, 0), t(16, 0)),
    "last week": (t(2, 0), t(9, 0)),
    "this month": (t(1, 0), t(1, 0, month=12)),
    "at 10:32": (t(11, 10, 17), t(11, 10, 47)),
    "around 10:32": (t(11, 10, 17), t(11, 10, 47)),
}


# ----------------------------------------------------------------------------- the store


def changed_mind(results, labels) -> str:
    return next(r.decision["decision_id"] for r in results
                if r.decision["outcome"] == "deny" and labels[r.decision["event_id"]][0])


def _build(url: str, trained, policy, small_world, witness) -> Any:
    db = make_engine(url)
    upgrade(db)
    eng = DecisionEngine(sessions=session_factory(db), model=trained[0], policy=policy, ledger=Ledger(witness_path=witness))
    ev = small_world.events
    later = ev[trained[2].test]
    pick = later[later["scenario"] != "benign"].groupby("scenario")["session"].first()
    rows = ev[ev["session"].isin(pick) | ev.index.isin(later.index[:500])]
    results = list(eng.score_many([row_to_event(r) for r in rows.to_dict("records")], chunk=200))
    labels = dict(zip(rows["event_id"], zip(rows["label"], rows["scenario"], strict=True), strict=True))
    with eng.sessions.begin() as s:
        for k, r in enumerate(results):
            d = r.decision
            if d["outcome"] == "allow" and k % 4:
                continue
            label, scenario = labels[d["event_id"]]
            add_verdict(s, decision_id=d["decision_id"], verdict="malicious" if label else "benign", analyst="t",
                        at="2026-11-12T00:00:00Z", attack_type=scenario if label else None)
        # a changed mind on a denied attack: the latest verdict (benign) is the one that counts
        add_verdict(s, decision_id=changed_mind(results, labels), verdict="benign", analyst="u", at="2026-11-12T01:00:00Z")
    ctx = ToolContext(sessions=eng.sessions, policy=policy, model=trained[0], clock=lambda: NOW)
    return ctx, db, results


@pytest.fixture(scope="module")
def store(trained, policy, small_world, tmp_path_factory):
    """One read-only SQLite store for the tests that need a single backend."""
    d = tmp_path_factory.mktemp("tools")
    ctx, db, results = _build(f"sqlite:///{d / 'g.db'}", trained, policy, small_world, d / "w.json")
    yield ctx, db, results
    db.dispose()


@pytest.fixture
def any_store(db_url, trained, policy, small_world, tmp_path):
    """The same store on SQLite and on PostgreSQL."""
    ctx, db, results = _build(db_url, trained, policy, small_world, tmp_path / "w.json")
    yield ctx, db, results
    db.dispose()


def ms(x: datetime) -> int:
    return round(x.timestamp() * 1000)


def sql_ids(db, where: str = "1=1", **params: Any) -> list[str]:
    with db.connect() as c:
        return [r[0] for r in c.execute(text(f"SELECT decision_id FROM decisions WHERE {where} "
                                             "ORDER BY ts_ms DESC, seq DESC"), params)]


def twice_judged(db) -> str:
    with db.connect() as c:
        (did,) = c.execute(text("SELECT decision_id FROM verdicts GROUP BY decision_id HAVING count(*) > 1")).one()
    return did


def sql_latest_verdicts(db) -> dict[str, tuple[str, str | None]]:
    with db.connect() as c:
        rows = c.execute(text("SELECT id, decision_id, verdict, attack_type FROM verdicts ORDER BY id")).all()
    return {d: (v, a) for _, d, v, a in rows}  # later ids overwrite earlier ones


def as_json(out: BaseModel) -> Any:
    return json.loads(json.dumps(out.model_dump(mode="json")))


# ----------------------------------------------------------------------------- time words


@pytest.mark.parametrize(("phrase", "window"), UTC_WINDOWS.items())
def test_phrases_resolve_to_their_windows_in_utc(phrase, window):
    w = resolve_when(phrase, now=NOW, tz=ZoneInfo("UTC"))
    assert (w.start, w.end) == window


def test_phrases_follow_the_wall_clock_of_the_zone():
    ny, now = ZoneInfo("America/New_York"), t(11, 3, 30)  # 22:30 on the 10th in New York (EST, UTC-5)
    got = {p: (w.start, w.end) for p in ("today", "yesterday", "this morning", "at 10:32", "this week")
           for w in [resolve_when(p, now=now, tz=ny)]}
    assert got["today"] == (t(10, 5), t(11, 5))
    assert got["yesterday"] == (t(9, 5), t(10, 5))
    assert got["this morning"] == (t(10, 11), t(10, 17))
    assert got["at 10:32"] == (t(10, 15, 17), t(10, 15, 47))
    assert got["this week"] == (t(9, 5), t(16, 5))
    berlin, spring = ZoneInfo("Europe/Berlin"), datetime(2026, 3, 29, 12, tzinfo=UTC)  # clocks go forward today
    today = resolve_when("today", now=spring, tz=berlin)
    assert (today.start, today.end) == (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    week = resolve_when("this week", now=spring, tz=berlin)
    assert (week.start, week.end) == (datetime(2026, 3, 22, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    hour = resolve_when("last hour", now=spring, tz=berlin)
    assert hour.end - hour.start == timedelta(hours=1)
    dec = resolve_when("this month", now=datetime(2026, 12, 15, tzinfo=UTC), tz=ZoneInfo("UTC"))
    assert (dec.start, dec.end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert resolve_when("  This   MORNING ", now=NOW, tz=ZoneInfo("UTC")).phrase == "this morning"


@pytest.mark.parametrize("phrase", ["next tuesday", "at 25:00", "around 10:75", "last 0 hours", "", "this morning!"])
def test_unknown_phrases_are_refused_naming_when(phrase):
    with pytest.raises(BadField) as exc:
        resolve_when(phrase, now=NOW, tz=ZoneInfo("UTC"))
    assert exc.value.field == "when"


# ----------------------------------------------------------------------------- find_decisions


def test_find_decisions_agrees_with_sql_on_both_backends(any_store):
    ctx, db, results = any_store
    users = [r.decision["user_id"] for r in results]
    busiest = max(set(users), key=users.count)
    morning = UTC_WINDOWS["this morning"]
    around = UTC_WINDOWS["around 10:32"]
    cases: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
        ({}, "1=1", {}),
        ({"when": "this morning"}, "ts_ms >= :a AND ts_ms < :b", {"a": ms(morning[0]), "b": ms(morning[1])}),
        ({"when": "around 10:32"}, "ts_ms >= :a AND ts_ms < :b", {"a": ms(around[0]), "b": ms(around[1])}),
        ({"when": "yesterday"}, "ts_ms >= :a AND ts_ms < :b", {"a": ms(t(10, 0)), "b": ms(t(11, 0))}),
        ({"user_id": busiest}, "user_id = :u", {"u": busiest}),
        ({"outcome": "deny"}, "outcome = 'deny'", {}),
        ({"user_id": busiest, "when": "today", "outcome": "allow"},
         "user_id = :u AND outcome = 'allow' AND ts_ms >= :a AND ts_ms < :b", {"u": busiest, "a": ms(t(11, 0)), "b": ms(t(12, 0))}),
        ({"resource_id": "mail", "since": "2026-11-11T09:00:00+01:00", "until": "2026-11-11T13:00:00Z"},
         "resource_id = 'mail' AND ts_ms >= :a AND ts_ms < :b", {"a": ms(t(11, 8)), "b": ms(t(11, 13))}),
    ]
    totals = []
    for args, where, params in cases:
        out = call_tool(ctx, "find_decisions", {**args, "limit": 200})
        expected = sql_ids(db, where, **params)
        assert out.total == len(expected), args
        assert [d.decision_id for d in out.decisions] == expected[:200], args
        totals.append(out.total)
    assert totals[0] == len(results) and 0 < totals[1] < totals[0] and totals[3] == 0 and totals[5] > 0
    default = call_tool(ctx, "find_decisions", {"when": "this morning"})
    assert len(default.decisions) == 20 and default.window is not None and default.window.start == morning[0]


def test_find_decisions_summaries_carry_the_explanation_drivers(store):
    ctx, _, _ = store
    for summary in call_tool(ctx, "find_decisions", {"outcome": "deny", "limit": 5}).decisions:
        assert summary.outcome == "deny"
        full = call_tool(ctx, "get_decision", {"decision_id": summary.decision_id})
        assert summary.top_family == full.explanation.top_family and summary.risk == full.decision.risk
        assert summary.scope == full.decision.threshold_scope and summary.policy_id == full.decision.policy_id
    out = call_tool(ctx, "find_decisions", {"limit": 200})
    with ctx.sessions() as s:
        bodies = dict(s.execute(select(ExplanationRow.decision_id, ExplanationRow.body)).all())
    for summary in out.decisions:
        factors = sorted(bodies[summary.decision_id]["factors"], key=lambda f: -f["contribution"])
        raising = [f for f in factors if f["contribution"] > 0][:3]
        assert [(d.feature, d.points, d.value) for d in summary.top_drivers] == [
            (f["feature"], f["points"], f["display"]) for f in raising]
    assert any(len(d.top_drivers) < 3 for d in out.decisions), "some decision has fewer than three drivers"
    stamps = [d.timestamp for d in call_tool(ctx, "find_decisions", {"limit": 50}).decisions]
    assert stamps == sorted(stamps, reverse=True)


def test_time_words_use_the_context_zone(store):
    ctx, db, _ = store
    berlin = ToolContext(sessions=ctx.sessions, policy=ctx.policy, model=ctx.model, clock=ctx.clock,
                         tz=ZoneInfo("Europe/Berlin"))
    out = call_tool(berlin, "find_decisions", {"when": "this morning"})  # 06:00-12:00 CET = 05:00-11:00 UTC
    assert (out.window.start, out.window.end) == (t(11, 5), t(11, 11))
    assert out.total == len(sql_ids(db, "ts_ms >= :a AND ts_ms < :b", a=ms(t(11, 5)), b=ms(t(11, 11))))
    assert out.total != call_tool(ctx, "find_decisions", {"when": "this morning"}).total


@pytest.mark.parametrize(("args", "fields"), [
    ({"when": "the other day"}, ["when"]),
    ({"when": "today", "since": "2026-11-11T00:00:00Z"}, ["when"]),
    ({"since": "2026-11-11T10:00:00Z", "until": "2026-11-11T09:00:00Z"}, ["until"]),
    ({"since": "2026-11-11T10:00:00"}, ["since"]),  # naive: which zone?
    ({"user": "alice"}, ["user"]),
    ({"limit": 201}, ["limit"]),
    ({"outcome": "blocked"}, ["outcome"]),
])
def test_find_decisions_refuses_bad_input_naming_the_field(store, args, fields):
    ctx, _, _ = store
    with pytest.raises(ToolInputError) as exc:
        call_tool(ctx, "find_decisions", args)
    assert exc.value.fields == fields and exc.value.tool == "find_decisions"
    json.dumps(exc.value.as_json())
    if args.get("when") == "the other day":
        assert "this morning" in exc.value.problems[0].message and "around HH:MM" in exc.value.problems[0].message


# ----------------------------------------------------------------------------- get_decision, session_timeline


def test_get_decision_returns_the_stored_record_event_and_verdicts(store):
    ctx, db, results = store
    r = next(r for r in results if r.decision["decision_id"] == twice_judged(db))
    out = call_tool(ctx, "get_decision", {"decision_id": r.decision["decision_id"]})
    assert out.decision.model_dump(mode="json") == {**r.decision, "exception": r.decision.get("exception")}
    assert out.explanation.model_dump(mode="json") == r.explanation
    assert out.event["event_id"] == r.decision["event_id"]
    assert [v.verdict for v in out.verdicts] == ["malicious", "benign"]  # the changed mind, in order
    by_event = call_tool(ctx, "get_decision", {"event_id": r.decision["event_id"]})
    assert by_event.decision.decision_id == out.decision.decision_id
    with pytest.raises(ToolNotFound) as exc:
        call_tool(ctx, "get_decision", {"decision_id": "dec-nope"})
    assert (exc.value.kind, exc.value.key) == ("decision", "dec-nope")
    with pytest.raises(ToolInputError) as bad:
        call_tool(ctx, "get_decision", {})
    assert bad.value.fields == ["decision_id"]


def test_session_timeline_is_the_core_timeline(store):
    ctx, _, results = store
    sid = next(r.decision["session_id"] for r in results if r.decision["outcome"] != "allow")
    out = call_tool(ctx, "session_timeline", {"session_id": sid})
    with ctx.sessions() as s:
        direct = build_timeline(sid, [({**decision_record(d), "event": d.event}, e.body) for d, e in session_decisions(s, sid)])
    assert out == direct and len(out.steps) > 1
    with pytest.raises(ToolNotFound):
        call_tool(ctx, "session_timeline", {"session_id": "s-none"})


# ----------------------------------------------------------------------------- what_if


def _counterfactual_cases(results, n=8):
    return [(r.decision, cf) for r in results for cf in r.explanation["counterfactuals"]][:n]


def test_what_if_with_the_suggested_counterfactual_flips_like_it_said(store):
    ctx, _, results = store
    cases = _counterfactual_cases(results)
    assert len(cases) >= 5
    for d, cf in cases:
        out = call_tool(ctx, "what_if", {"decision_id": d["decision_id"], "actions": [a["action"] for a in cf["actions"]]})
        assert out.before.outcome == d["outcome"] and out.before.risk == pytest.approx(d["risk"], abs=1e-12)
        assert out.after.outcome == cf["outcome_after"] and out.after.risk == pytest.approx(cf["risk_after"], abs=1e-12)
        assert out.flipped
        assert {c.feature for c in out.changes} == {c["feature"] for a in cf["actions"] for c in a["changes"]}
        as_json(out)


def test_what_if_changes_follow_the_policy_rules(store):
    ctx, _, results = store
    d = next(r.decision for r in results if r.decision["sensitivity"] == "restricted" and r.decision["outcome"] == "allow")
    out = call_tool(ctx, "what_if", {"decision_id": d["decision_id"], "changes": {"device_managed": False}})
    assert out.after.outcome == "deny" and "dev-unmanaged-restricted-deny" in out.after.rules and out.flipped
    assert [(c.feature, c.before, c.after) for c in out.changes] == [("device_managed", "yes", "no")]
    weak = call_tool(ctx, "what_if", {"decision_id": d["decision_id"], "changes": {"mfa_method": "none"}})
    assert [(c.label, c.after) for c in weak.changes] == [("MFA method", "none")]
    assert "auth-no-mfa-step-up" in weak.after.rules and weak.after.outcome != "allow"


def test_what_if_that_changes_nothing_does_not_flip(store):
    ctx, _, results = store
    r = next(r for r in results if r.decision["outcome"] == "deny")
    current = {f["feature"]: f["value"] for f in r.explanation["factors"]}
    out = call_tool(ctx, "what_if", {"decision_id": r.decision["decision_id"],
                                     "changes": {"device_compliant": bool(current["device_compliant"]),
                                                 "failed_attempts_1h": current["failed_attempts_1h"]}})
    assert not out.flipped and out.changes == [] and out.after.risk == out.before.risk
    assert any("no signal changed" in n for n in out.notes)


@pytest.mark.parametrize(("changes", "field"), [
    ({"device_compliantt": True}, "changes.device_compliantt"),
    ({"requests_per_min": True}, "changes.requests_per_min"),
    ({"mfa_strength": "yubikey"}, "changes.mfa_strength"),
    ({"is_tor": 2}, "changes.is_tor"),
    ({"unusual_hour": 1.5}, "changes.unusual_hour"),
    ({"failed_attempts_1h": -1}, "changes.failed_attempts_1h"),
])
def test_what_if_refuses_bad_changes_naming_the_key(store, changes, field):
    ctx, _, results = store
    with pytest.raises(ToolInputError) as exc:
        call_tool(ctx, "what_if", {"decision_id": results[0].decision["decision_id"], "changes": changes})
    assert exc.value.fields == [field]


def test_what_if_needs_something_to_change_and_a_model(store):
    ctx, _, results = store
    did = results[0].decision["decision_id"]
    with pytest.raises(ToolInputError) as exc:
        call_tool(ctx, "what_if", {"decision_id": did})
    assert exc.value.fields == ["actions"]
    with pytest.raises(ToolInputError) as exc:
        call_tool(ctx, "what_if", {"decision_id": did, "actions": ["buy_a_new_laptop"]})
    assert exc.value.fields == ["actions.0"]
    with pytest.raises(ToolNotFound):
        call_tool(ctx, "what_if", {"decision_id": "dec-nope", "actions": ["corporate_network"]})
    no_model = ToolContext(sessions=ctx.sessions, policy=ctx.policy, model=None, clock=ctx.clock)
    with pytest.raises(ToolUnavailable):
        call_tool(no_model, "what_if", {"decision_id": did, "actions": ["corporate_network"]})


def test_action_ids_are_the_counterfactual_actions():
    assert set(get_args(ActionId)) == {a.id for a in ACTIONS}


# ----------------------------------------------------------------------------- replay_threshold


def test_replay_threshold_equals_the_core_replay(store, policy):
    ctx, _, _ = store
    args = {"policy_id": "POL-ACCESS-001", "scope": "tier:restricted", "step_up_at": 0.05, "deny_at": 0.3}
    out = call_tool(ctx, "replay_threshold", args)
    with ctx.sessions() as s:
        frame = replay_frame(s, policy_id="POL-ACCESS-001", scope="tier:restricted")
    assert out.result == replay(frame, policy_id="POL-ACCESS-001", scope="tier:restricted", step_up_at=0.05, deny_at=0.3)
    assert out.result.overall.total > 20 and out.result.overall.changed > 0
    cur = policy.threshold_for(kind="database", sensitivity="restricted")
    assert (out.current.step_up_at, out.current.deny_at, out.current.section) == (cur.step_up_at, cur.deny_at, cur.section)
    same = call_tool(ctx, "replay_threshold", {"policy_id": "POL-ACCESS-001", "scope": "tier:restricted", "deny_at": 0.7})
    assert same.result.step_up_at == cur.step_up_at
    unchanged = call_tool(ctx, "replay_threshold", {"policy_id": "POL-OT-004", "scope": "kind:ot"})
    assert unchanged.result.overall.changed == 0 and unchanged.result.overall.total > 0


@pytest.mark.parametrize(("args", "fields"), [
    ({"policy_id": "POL-ACCESS-001", "scope": "kind:ot"}, ["scope"]),
    ({"policy_id": "POL-NOPE-001", "scope": "tier:restricted"}, ["policy_id"]),
    ({"policy_id": "POL-ACCESS-001", "scope": "tier:secret"}, ["scope"]),
    ({"policy_id": "POL-ACCESS-001", "scope": "tier:restricted", "step_up_at": 0.8, "deny_at": 0.5}, ["step_up_at", "deny_at"]),
    ({"policy_id": "POL-ACCESS-001", "scope": "tier:restricted", "deny_at": 1.5}, ["deny_at"]),
])
def test_replay_threshold_refuses_bad_input(store, args, fields):
    ctx, _, _ = store
    with pytest.raises(ToolInputError) as exc:
        call_tool(ctx, "replay_threshold", args)
    assert exc.value.fields == fields


def test_scope_literal_covers_every_tier_and_kind():
    assert set(get_args(Scope)) == {f"tier:{s}" for s in Sensitivity} | {f"kind:{k}" for k in ResourceKind}


# ----------------------------------------------------------------------------- similar_decisions


def test_similar_decisions_are_the_nearest_by_cosine_on_both_backends(any_store):
    ctx, db, results = any_store
    target = twice_judged(db)
    with ctx.sessions() as s:
        rows = s.execute(select(ExplanationRow.decision_id, ExplanationRow.contributions)).all()
    ids = [i for i, _ in rows]
    M = np.array([c for _, c in rows])
    v = M[ids.index(target)]
    brute = {i: float(m @ v / (np.linalg.norm(m) * np.linalg.norm(v))) for i, m in zip(ids, M, strict=True)}

    out = call_tool(ctx, "similar_decisions", {"decision_id": target, "k": 15, "include_self": True})
    assert out.neighbours[0].decision.decision_id == target and out.neighbours[0].similarity == pytest.approx(1.0)
    sims = [n.similarity for n in out.neighbours]
    assert sims == sorted(sims, reverse=True) and len(sims) == 15
    expected = sorted(brute.values(), reverse=True)[:15]
    assert sims == pytest.approx(expected, abs=1e-9)
    assert all(brute[n.decision.decision_id] == pytest.approx(n.similarity, abs=1e-9) for n in out.neighbours)
    assert out.candidates_considered == len(results)

    latest = sql_latest_verdicts(db)
    got = [latest.get(n.decision.decision_id) for n in out.neighbours]
    assert out.summary.malicious == sum(1 for g in got if g and g[0] == "malicious")
    assert out.summary.benign == sum(1 for g in got if g and g[0] == "benign")
    assert out.summary.unlabelled == sum(1 for g in got if g is None)
    assert out.summary.benign + out.summary.malicious > 0
    assert [n.verdict.verdict if n.verdict else None for n in out.neighbours] == [g[0] if g else None for g in got]
    assert out.neighbours[0].verdict.verdict == "benign"  # the latest of its two verdicts


def test_similar_decisions_filters(store):
    ctx, db, results = store
    d = next(r.decision for r in results if r.decision["outcome"] == "step_up")
    out = call_tool(ctx, "similar_decisions", {"decision_id": d["decision_id"], "k": 30, "same_outcome": True})
    assert out.neighbours and all(n.decision.outcome == "step_up" for n in out.neighbours)
    assert d["decision_id"] not in {n.decision.decision_id for n in out.neighbours}
    assert out.candidates_considered == len(sql_ids(db, "outcome = 'step_up'")) - 1
    scoped = call_tool(ctx, "similar_decisions", {"decision_id": d["decision_id"], "same_scope": True, "k": 100})
    assert {(n.decision.policy_id, n.decision.scope) for n in scoped.neighbours} == {(d["policy_id"], d["threshold_scope"])}
    recent = sql_ids(db)[:50]
    few = call_tool(ctx, "similar_decisions", {"decision_id": d["decision_id"], "candidates": 50, "k": 100})
    assert {n.decision.decision_id for n in few.neighbours} <= set(recent) and few.candidates_considered <= 50
    with pytest.raises(ToolNotFound):
        call_tool(ctx, "similar_decisions", {"decision_id": "dec-nope"})


# ----------------------------------------------------------------------------- verdict_stats


def _recount(db, lo: int | None = None, hi: int | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    latest = sql_latest_verdicts(db)
    with db.connect() as c:
        rows = c.execute(text("SELECT decision_id, policy_id, threshold_scope, outcome, ts_ms FROM decisions")).all()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for did, pid, scope, outcome, ts in rows:
        if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
            continue
        e = out.setdefault((pid, scope), {"counts": {}, "attacks": {}})
        verdict, attack = latest.get(did, ("unlabelled", None))
        e["counts"][(outcome, verdict)] = e["counts"].get((outcome, verdict), 0) + 1
        if verdict == "malicious":
            e["attacks"][attack or "unspecified"] = e["attacks"].get(attack or "unspecified", 0) + 1
    return out


def _check_stats(out, expected) -> None:
    assert {(r.policy_id, r.scope) for r in out.scopes} == set(expected)
    for r in out.scopes:
        e = expected[(r.policy_id, r.scope)]
        for outcome in ("allow", "step_up", "deny"):
            o = r.by_outcome[outcome]
            for verdict in ("malicious", "benign", "unlabelled"):
                assert getattr(o, verdict) == e["counts"].get((outcome, verdict), 0), (r.scope, outcome, verdict)
            assert o.decisions == o.malicious + o.benign + o.unlabelled
        assert r.decisions == sum(e["counts"].values())
        d = r.by_outcome["deny"]
        assert r.benign_share_of_labelled_denials == (d.benign / (d.benign + d.malicious) if d.benign + d.malicious else None)
        assert r.attack_types == e["attacks"]


def test_verdict_stats_equal_a_direct_recount(store):
    ctx, db, _ = store
    out = call_tool(ctx, "verdict_stats", {})
    _check_stats(out, _recount(db))
    labelled = [r for r in out.scopes if r.benign_share_of_labelled_denials is not None]
    assert labelled and any(r.attack_types for r in out.scopes)
    morning = UTC_WINDOWS["this morning"]
    _check_stats(call_tool(ctx, "verdict_stats", {"when": "this morning"}), _recount(db, ms(morning[0]), ms(morning[1])))
    one = call_tool(ctx, "verdict_stats", {"policy_id": "POL-ACCESS-001", "scope": "tier:restricted"})
    assert [(r.policy_id, r.scope) for r in one.scopes] == [("POL-ACCESS-001", "tier:restricted")]
    with pytest.raises(ToolInputError) as exc:
        call_tool(ctx, "verdict_stats", {"policy_id": "POL-NOPE-001"})
    assert exc.value.fields == ["policy_id"]


# ----------------------------------------------------------------------------- the registry


DECISION_TOOLS = {"find_decisions", "get_decision", "session_timeline", "what_if", "replay_threshold",
                  "similar_decisions", "verdict_stats"}  # the policy tools are tested with the policy index


def test_tool_specs_describe_every_tool_and_its_input():
    specs = tool_specs()
    names = [s["function"]["name"] for s in specs]
    assert names == list(REGISTRY) and len(set(names)) == len(names) and DECISION_TOOLS <= set(names)
    json.dumps(specs)
    for spec in specs:
        tool = REGISTRY[spec["function"]["name"]]
        params = spec["function"]["parameters"]
        assert spec["type"] == "function" and spec["function"]["description"]
        assert set(params["properties"]) == set(tool.input_model.model_fields)
        assert set(params.get("required", [])) == {k for k, f in tool.input_model.model_fields.items() if f.is_required()}
        assert params["additionalProperties"] is False
        assert all(p.get("description") for p in params["properties"].values()), tool.name


def test_every_tool_has_a_docstring_saying_when_to_use_it():
    for tool in REGISTRY.values():
        doc = inspect.getdoc(tool.function)
        assert doc and tool.description == " ".join(doc.split())
        assert "use it" in tool.description.lower(), tool.name


def _undocumented(ctx: ToolContext, args: SessionTimelineInput) -> SessionTimelineInput:
    return args


def _untyped(ctx: ToolContext, args: dict) -> dict:
    """Use it never."""
    return args


def test_registry_refuses_untyped_or_undocumented_functions_and_unknown_names(store):
    with pytest.raises(TypeError, match="docstring"):
        Tool.from_function(_undocumented)
    with pytest.raises(TypeError, match="pydantic"):
        Tool.from_function(_untyped)
    with pytest.raises(UnknownTool):
        call_tool(store[0], "drop_tables", {})


def test_every_tool_output_is_json(store):
    ctx, _, results = store
    d = next(r.decision for r in results if r.decision["outcome"] == "deny")
    calls = {"find_decisions": {"when": "today"}, "get_decision": {"decision_id": d["decision_id"]},
             "session_timeline": {"session_id": d["session_id"]},
             "what_if": {"decision_id": d["decision_id"], "actions": ["compliant_managed_device"]},
             "replay_threshold": {"policy_id": d["policy_id"], "scope": d["threshold_scope"]},
             "similar_decisions": {"decision_id": d["decision_id"]}, "verdict_stats": {"when": "this week"}}
    assert set(calls) == DECISION_TOOLS
    for name, args in calls.items():
        out = call_tool(ctx, name, args)
        assert isinstance(out, REGISTRY[name].output_model)
        assert as_json(out) == out.model_dump(mode="json")
    with ctx.sessions() as s:
        assert s.scalar(select(DecisionRow.outcome).where(DecisionRow.decision_id == d["decision_id"])) == "deny"
