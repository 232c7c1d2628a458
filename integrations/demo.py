"""The demo world: generate, train, replay the later days through the online path, summarise."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from integrations.runtime import Runtime
from risk.audit import AuditKind
from risk.features import warm_profiles
from risk.store.queries import add_verdict, get_decision, session_decisions
from risk.store.schema import DecisionRow, ProfileRow, SessionRow
from risk.synth import ATTACKS, generate_world, row_to_event, world_start_for
from risk.timeline import build_timeline
from risk.training import train_on_world

Stage = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)

MARKER = "demo.json"


class DemoRefused(RuntimeError):
    """GLASSGATE_HOME holds state that the demo did not create."""


@dataclass
class DemoResult:
    summary: dict[str, Any]
    examples: dict[str, str]  # name -> decision id or session id


def reset_home(rt: Runtime) -> None:
    home = rt.settings.home
    owned = [home / "glassgate.db", home / "glassgate.db-wal", home / "glassgate.db-shm", rt.settings.witness_path,
             home / "sample-events.jsonl", home / MARKER]
    has_state = any(p.exists() for p in owned[:1]) or rt.settings.models_dir.exists()
    if has_state and not (home / MARKER).exists():
        raise DemoRefused(f"{home} holds glassgate state that the demo did not create; "
                          "point GLASSGATE_HOME at an empty directory for the demo")
    if rt.settings.database_url:
        raise DemoRefused("the demo builds its own SQLite database; unset GLASSGATE_DATABASE_URL for it")
    for p in owned:
        p.unlink(missing_ok=True)
    shutil.rmtree(rt.settings.models_dir, ignore_errors=True)


def run_demo(rt: Runtime, *, users: int, days: int, seed: int, test_days: int, stage: Stage) -> DemoResult:
    reset_home(rt)
    now = rt.clock()  # type: ignore[operator]
    adv = stage("generating the organisation and its traffic", 100)
    shown = [0]

    def on_generate(_step: str, frac: float) -> None:
        pct = int(frac * 100)
        adv(pct - shown[0])
        shown[0] = pct

    world = generate_world(users=users, days=days, seed=seed, start=world_start_for(now, days), until=now,
                           progress=on_generate)
    trees = stage("training the risk model (200 trees, monotone constraints)", 100)
    last = [0]

    def on_train(step: str, frac: float) -> None:
        if step == "trees":
            pct = int(frac * 90)
            trees(pct - last[0])
            last[0] = pct
    model, _X, split = train_on_world(world, rt.policy, test_days=test_days, progress=on_train)
    rt.save_model(model)
    trees(100 - last[0])

    history = world.events[world.events["ts"] < split.split_ts].reset_index(drop=True)
    later = world.events[split.test].reset_index(drop=True)
    warm = stage("building per-user baselines from the earlier days", len(history))
    profiles, sessions = warm_profiles(history)
    first = history.groupby("session")["ts"].min().to_dict()
    last_ts = history.groupby("session")["ts"].max().to_dict()
    with rt.sessions.begin() as s:
        now_ms = int(now.timestamp() * 1000)
        s.add_all([ProfileRow(user_id=u, state=p.to_json(), updated_ms=now_ms) for u, p in profiles.items()])
        s.add_all([SessionRow(session_id=k, user_id=v.user_id, state=v.to_json(), first_ms=int(first[k] * 1000),
                              last_ms=int(last_ts[k] * 1000)) for k, v in sessions.items()])
    warm(len(history))

    replay = stage("deciding the later days online (score, explain, store, audit)", len(later))
    events = (row_to_event(r) for r in later.to_dict("records"))
    outcomes = [r.decision["outcome"] for r in rt.engine.score_many(events, chunk=400, progress=replay)]  # type: ignore[union-attr]

    later = later.assign(outcome=outcomes)
    _seed_verdicts(rt, later, seed)
    head = rt.engine.checkpoint()
    with rt.sessions() as s:
        report = rt.ledger.verify(s)

    idx = stage("indexing the policy corpus (offline MiniLM embeddings, chroma)", 1)
    rt.index  # noqa: B018 - builds and syncs the index now, so the first question is quick
    idx(1)
    summary = _summary(model.card, later, head.size, report.ok)
    examples = _examples(rt, later)
    (rt.settings.home / MARKER).write_text(json.dumps({"summary": summary, "examples": examples}, indent=2))
    _write_sample(rt, world)
    return DemoResult(summary=summary, examples=examples)


def _seed_verdicts(rt: Runtime, later: Any, seed: int) -> None:
    """Simulated analyst triage: most flagged attacks confirmed, some flagged benign events cleared."""
    rng = np.random.default_rng(seed + 1)
    flagged = later[later["outcome"] != "allow"]
    now = rt.clock()  # type: ignore[operator]
    from risk.engine import decision_id_for

    with rt.sessions.begin() as s:
        entries = []
        for r in flagged.itertuples(index=False):
            p = rng.random()
            if r.label and p < 0.7:
                verdict, attack = "malicious", r.scenario
            elif not r.label and p < 0.5:
                verdict, attack = "benign", None
            else:
                continue
            did = decision_id_for(r.event_id)
            add_verdict(s, decision_id=did, verdict=verdict, analyst="demo-analyst", attack_type=attack,
                        at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
            entries.append((AuditKind.VERDICT, did, {"decision_id": did, "verdict": verdict, "attack_type": attack,
                                                     "analyst": "demo-analyst"}, now))
        rt.ledger.append_many(s, entries)


def _summary(card: dict[str, Any], later: Any, audit_size: int, audit_ok: bool) -> dict[str, Any]:
    m = card["test_metrics"]
    per_type = {}
    for name in ATTACKS:
        sel = later[later["scenario"] == name]
        if len(sel):
            c = Counter(sel["outcome"])
            per_type[name] = {"events": len(sel), "deny": c["deny"], "step_up": c["step_up"], "allow": c["allow"],
                              "top_family_is_cause": m["per_attack_type"].get(name, {}).get("top_family_is_cause")}
    benign = later[later["label"] == 0]
    lookalikes = {name: float((grp["outcome"] != "allow").mean())
                  for name, grp in later[later["label"] == 0].groupby("scenario") if name != "benign"}
    return {
        "model_version": card["version"], "roc_auc": m.get("roc_auc"), "pr_auc": m.get("pr_auc"),
        "top_family_is_cause": m.get("top_family_is_cause"), "decisions": len(later),
        "outcomes": dict(Counter(later["outcome"])), "per_attack_type": per_type,
        "benign_flagged_share": float((benign["outcome"] != "allow").mean()) if len(benign) else None,
        "benign_lookalikes_flagged": lookalikes,
        "audit_entries": audit_size, "audit_ok": audit_ok,
    }


def _examples(rt: Runtime, later: Any) -> dict[str, str]:
    from risk.engine import decision_id_for

    out: dict[str, str] = {}
    for name, scen, want in (("impossible_travel_denied", "impossible_travel", "deny"),
                             ("mfa_fatigue", "mfa_fatigue", None), ("bulk_export", "bulk_export", None),
                             ("traveller_on_corporate_vpn", "travel_vpn", "allow")):
        sel = later[(later["scenario"] == scen) & ((later["outcome"] == want) if want else True)]
        if len(sel):
            out[name] = decision_id_for(sel.iloc[0]["event_id"])
    deg = later[(later["scenario"] == "posture_degraded") & (later["outcome"] != "allow")]
    if len(deg):
        out["posture_degraded_session"] = deg.iloc[0]["session"]
    return out


def example_texts(rt: Runtime, examples: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The records behind the examples, for printing."""
    out = []
    with rt.sessions() as s:
        for name, ident in examples.items():
            if name.endswith("_session"):
                items = [({**_rec(d), "event": d.event}, e.body) for d, e in session_decisions(s, ident)]
                out.append((name, {"timeline": build_timeline(ident, items).model_dump()}))
            else:
                d, e = get_decision(s, ident)
                out.append((name, {"decision": _rec(d), "explanation": e.body}))
    return out


def _rec(d: DecisionRow) -> dict[str, Any]:
    from risk.engine import decision_record

    return decision_record(d)


def _write_sample(rt: Runtime, world: Any) -> None:
    """A few fresh events (new ids) and one malformed line, to try `glassgate score` on."""
    tail = world.events.tail(5).to_dict("records")
    lines = []
    for r in tail:
        ev = row_to_event(r)
        ev["event_id"] = ev["event_id"] + "-try"
        lines.append(json.dumps(ev))
    bad = row_to_event(tail[0])
    bad["event_id"] += "-bad"
    bad["network"].pop("lon", None)
    bad["network"]["lat"] = 52.5
    bad["auth"]["failed_attempts_1h"] = -3
    bad["surprise"] = True
    lines.insert(2, json.dumps(bad))
    (rt.settings.home / "sample-events.jsonl").write_text("\n".join(lines) + "\n")

