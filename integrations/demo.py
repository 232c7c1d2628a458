"""The demo world: generate, train, replay the later days through the online path, summarise."""

from __future__ import annotations

import json
import secrets
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from integrations.audit_anchor import init_ledger
from integrations.principals import token_hash
from integrations.runtime import Runtime
from integrations.settings import SHIPPED_PRINCIPALS
from risk.audit import AuditKind
from risk.features import warm_profiles
from risk.store.queries import add_verdict, get_decision, session_decisions
from risk.store.schema import DecisionRow, ProfileRow, SessionRow
from risk.synth import ATTACKS, generate_world, row_to_event, world_start_for
from risk.timeline import build_timeline
from risk.training import train_on_world

Stage = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)

MARKER = "demo.json"
PRINCIPALS = "principals.yaml"


class DemoRefused(RuntimeError):
    """GLASSGATE_HOME holds state that the demo did not create."""


@dataclass
class DemoResult:
    summary: dict[str, Any]
    examples: dict[str, str]  # name -> decision id or session id
    tokens: dict[str, str]  # principal id -> bearer token (shown once; only hashes are stored)
    proposal_id: str | None  # a pending exception request, for a newcomer to approve


def reset_home(rt: Runtime) -> None:
    home = rt.settings.home
    owned = [home / "glassgate.db", home / "glassgate.db-wal", home / "glassgate.db-shm", rt.settings.witness_path,
             home / "sample-events.jsonl", home / PRINCIPALS, home / MARKER]
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
    init_ledger(rt)  # the new ledger's first signed witness (the key, next to the home, is made once)
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
    proposal_id = _draft_exception(rt, later)
    head = rt.engine.checkpoint()
    with rt.sessions() as s:
        report = rt.ledger.verify(s)

    idx = stage("indexing the policy corpus (offline MiniLM embeddings, chroma)", 1)
    rt.index  # noqa: B018 - builds and syncs the index now, so the first question is quick
    idx(1)
    summary = _summary(model.card, later, head.size, report.ok)
    examples = _examples(rt, later)
    tokens = write_principals(rt)
    (rt.settings.home / MARKER).write_text(json.dumps({"summary": summary, "examples": examples,
                                                       "proposal_id": proposal_id}, indent=2))
    _write_sample(rt, world)
    return DemoResult(summary=summary, examples=examples, tokens=tokens, proposal_id=proposal_id)


def write_principals(rt: Runtime) -> dict[str, str]:
    """Write GLASSGATE_HOME/principals.yaml: the shipped demo principals, each with a fresh random token
    stored only as its SHA-256. Returns the tokens (principal id -> token) for printing once."""
    shipped = yaml.safe_load(SHIPPED_PRINCIPALS.read_text())["principals"]
    tokens = {p["id"]: secrets.token_urlsafe(32) for p in shipped}
    out = [{**p, "token_sha256": token_hash(tokens[p["id"]])} for p in shipped]
    path = rt.settings.home / PRINCIPALS
    path.write_text("# Written by `glassgate demo`: tokens are stored as SHA-256 only; they were printed once.\n"
                    + yaml.safe_dump({"principals": out}, sort_keys=False))
    path.chmod(0o600)
    rt.__dict__.pop("principals", None)
    rt.__dict__.pop("agent_deps", None)
    rt.__dict__.pop("graph", None)
    return tokens


def _draft_exception(rt: Runtime, later: Any) -> str | None:
    """An analyst's pending request for a time-boxed exception after a benign event was stepped up or
    denied: drafted through the same tool the agent and Slack use; nothing is applied until approved."""
    from dataclasses import replace

    from risk.engine import decision_id_for
    from tools.registry import call_tool

    flagged = later[later["outcome"] != "allow"]
    if not len(flagged):
        return None
    benign = flagged[flagged["label"] == 0]
    lookalike = benign[benign["scenario"] != "benign"]  # travel, new laptop...: the requests analysts field
    r = next(c for c in (lookalike, benign, flagged) if len(c)).iloc[0]
    did = decision_id_for(r["event_id"])
    with rt.sessions() as s:
        d, _ = get_decision(s, did)
        user, resource = d.user_id, d.resource_id
    ctx = replace(rt.tool_context(with_index=False), principal="ana")
    out = call_tool(ctx, "propose_action", {
        "kind": "grant_exception", "evidence": {"decision_ids": [did]},
        "payload": {"user_id": user, "resource_id": resource, "duration_hours": 8,
                    "reason": f"{user} confirmed by phone that the {r['scenario'].replace('_', ' ')} was them"}})
    return str(out.proposal["proposal_id"])


def _seed_verdicts(rt: Runtime, later: Any, seed: int) -> None:
    """Simulated analyst triage: most flagged attacks confirmed, some flagged benign events cleared."""
    rng = np.random.default_rng(seed + 1)
    flagged = later[later["outcome"] != "allow"]
    now = rt.clock()  # type: ignore[operator]
    from risk.engine import decision_id_for

    with rt.sessions.begin() as s:
        entries: list[tuple[str, str, dict[str, Any], Any]] = []
        for r in flagged.itertuples(index=False):
            p = rng.random()
            if r.label and p < 0.7:
                verdict, attack = "malicious", r.scenario
            elif not r.label and p < 0.5:
                verdict, attack = "benign", None
            else:
                continue
            did = decision_id_for(r.event_id)
            analyst = ("ana", "sam")[len(entries) % 2]  # the demo's two analysts (tuning needs two people)
            add_verdict(s, decision_id=did, verdict=verdict, analyst=analyst, attack_type=attack,
                        at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
            entries.append((AuditKind.VERDICT, did, {"decision_id": did, "verdict": verdict, "attack_type": attack,
                                                     "analyst": analyst}, now))
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
    if "impossible_travel_denied" not in out:  # a small world: any denial, else any step-up, else any
        for want in ("deny", "step_up", "allow"):
            sel = later[later["outcome"] == want]
            if len(sel):
                out[f"{want}_example"] = decision_id_for(sel.iloc[0]["event_id"])
                break
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

