"""The stress suite: one strong anomaly per family on a clean, established user, and ordinary variations.

``python -m evals.stress [--users N --days D --seed S --max-iter T]`` trains the default model (as
``glassgate train`` does) and prints its card figures (ROC-AUC, PR-AUC, Brier, per-attack recall,
look-alike flag rates), the stress results per family and the count sweeps. ``glassgate eval`` runs the
same :func:`run_stress` over its eval model and gates on it.

The cases (``evals/datasets/stress_cases.yaml``) are written from security knowledge, not from
:mod:`risk.synth`: the probe is featurized by the online path against a profile folded from two weeks of
the user's ordinary history, then decided by the policy. ``threshold_outcome`` is the model alone;
``outcome`` adds the hard rules.
"""

from __future__ import annotations

import argparse
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from risk.catalog import Family
from risk.engine import context_for
from risk.events import parse_event
from risk.features import SessionState, UserProfile, event_row, featurize_online
from risk.model import RiskModel
from risk.policy import OUTCOME_RANK, Outcome, PolicySet

STRESS_PATH = Path(__file__).parent / "datasets" / "stress_cases.yaml"
HISTORY_START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
CLIFF_BOUND = 0.25  # largest risk step allowed between adjacent sweep values (the model card states it)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Home(_Strict):
    country: str
    lat: float
    lon: float
    asn: int
    utc_offset: float


class StressUser(_Strict):
    id: str
    roles: list[str]
    privileged: bool
    home: Home
    history_days: int = Field(ge=7, le=60)
    sessions_per_workday: int = Field(ge=1, le=8)
    events_per_session: int = Field(ge=1, le=20)
    requests_per_min: int
    bytes_out: int
    distinct_resources_1h: int


class Probe(_Strict):
    local_hour: float
    after_minutes: float
    minutes_since_mfa: int


class StressCase(_Strict):
    id: str
    family: Family
    kind: Literal["anomaly", "variation"]
    description: str
    set: dict[str, Any] = Field(default_factory=dict)
    in_session: dict[str, Any] | None = None  # the change happens inside the anchor's session
    local_hour: float | None = None
    after_minutes: float | None = None


class Sweep(_Strict):
    field: str
    values: list[float]
    bounded_upto: float | None = None  # the cliff bound holds for adjacent values up to here (None: all)


class StressSpec(_Strict):
    user: StressUser
    resource: dict[str, str]
    probe: Probe
    cases: list[StressCase]
    sweeps: list[Sweep] = Field(default_factory=list)


def load_stress(path: Path = STRESS_PATH) -> StressSpec:
    return StressSpec.model_validate(yaml.safe_load(path.read_text()))


def _set(ev: dict[str, Any], path: str, value: Any) -> None:
    *head, last = path.split(".")
    d = ev
    for k in head:
        d = d[k]
    if value is None:
        d.pop(last, None)
    else:
        d[last] = value


def _event(spec: StressSpec, *, eid: str, sid: str, at: datetime, minutes_since_mfa: int, office: bool,
           k: int = 0) -> dict[str, Any]:
    u, h = spec.user, spec.user.home
    wobble = 1.0 + 0.15 * np.sin(k * 1.7)  # ordinary day-to-day variation, deterministic
    return {
        "event_id": eid, "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "session_id": sid,
        "user": {"id": u.id, "roles": list(u.roles), "privileged": u.privileged},
        "device": {"id": "lt-stress", "managed": True, "compliant": True, "edr_running": True, "disk_encrypted": True,
                   "os_patch_age_days": 9, "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},
        "network": {"ip": "203.0.113.7", "country": h.country, "asn": 64600 if office else h.asn,
                    "lat": h.lat, "lon": h.lon, "is_vpn": False, "is_tor": False, "is_hosting": False},
        "auth": {"mfa_method": "webauthn", "minutes_since_mfa": minutes_since_mfa, "failed_attempts_1h": 0},
        "resource": dict(spec.resource),
        "activity": {"action": "read", "requests_per_min": int(round(u.requests_per_min * wobble)),
                     "bytes_out": int(round(u.bytes_out * wobble)), "distinct_resources_1h": u.distinct_resources_1h},
    }


def history(spec: StressSpec) -> list[dict[str, Any]]:
    """Two weeks (``history_days``) of the user's ordinary work, in time order."""
    u = spec.user
    out: list[dict[str, Any]] = []
    for d in range(u.history_days):
        day = HISTORY_START + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for s in range(u.sessions_per_workday):
            start = day + timedelta(hours=9.0 + 2.5 * s - u.home.utc_offset)
            for e in range(u.events_per_session):
                k = len(out)
                out.append(_event(spec, eid=f"stress-h{k}", sid=f"s-stress-{d}-{s}", at=start + timedelta(minutes=6 * e),
                                  minutes_since_mfa=6 * e + 2, office=s > 0, k=k))
    return out


def _probe_day(spec: StressSpec) -> datetime:
    day = HISTORY_START + timedelta(days=spec.user.history_days)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def probe_events(spec: StressSpec, case: StressCase, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The anchor event (ordinary, on the probe day) and the probe itself."""
    hour = case.local_hour if case.local_hour is not None else spec.probe.local_hour
    gap = case.after_minutes if case.after_minutes is not None else (10.0 if case.in_session else spec.probe.after_minutes)
    at = _probe_day(spec) + timedelta(hours=hour - spec.user.home.utc_offset)
    anchor = _event(spec, eid=f"stress-anchor-{case.id}", sid=f"s-anchor-{case.id}", at=at - timedelta(minutes=gap),
                    minutes_since_mfa=3, office=True)
    sid = anchor["session_id"] if case.in_session else f"s-probe-{case.id}"
    probe = _event(spec, eid=f"stress-{case.id}", sid=sid, at=at, office=True,
                   minutes_since_mfa=int(gap + 3) if case.in_session else spec.probe.minutes_since_mfa)
    for path, value in {**case.set, **(case.in_session or {}), **(overrides or {})}.items():
        _set(probe, path, value)
    return [anchor, probe]


class StressResult(BaseModel):
    id: str
    family: Family
    kind: Literal["anomaly", "variation"]
    description: str
    risk: float
    step_up_at: float
    threshold_outcome: Outcome
    outcome: Outcome
    rules: list[str]
    passed: bool


def _profile(spec: StressSpec) -> tuple[UserProfile, dict[str, SessionState]]:
    p = UserProfile(spec.user.id)
    sessions: dict[str, SessionState] = {}
    for raw in history(spec):
        ev = parse_event(raw)
        st = sessions.setdefault(ev.session_id, SessionState(ev.session_id, ev.user.id))
        featurize_online(event_row(ev), p, st)
    return p, sessions


def _decide(model: RiskModel, policy: PolicySet, profile: UserProfile, events: list[dict[str, Any]]) -> tuple[float, Any]:
    p = copy.deepcopy(profile)
    states: dict[str, SessionState] = {}
    x = None
    for raw in events:
        ev = parse_event(raw)
        x = featurize_online(event_row(ev), p, states.setdefault(ev.session_id, SessionState(ev.session_id, ev.user.id)))
    assert x is not None
    risk = float(model.risk(x[None, :])[0])
    from risk.catalog import FEATURE_NAMES

    pd_ = policy.decide(risk=risk, signals={**dict(zip(FEATURE_NAMES, x.tolist(), strict=True)), **context_for(ev)})
    return risk, pd_


def run_stress(model: RiskModel, policy: PolicySet, spec: StressSpec | None = None) -> dict[str, Any]:
    """Decide every case and sweep; returns ``{"cases", "families", "sweeps", "passed"}``."""
    spec = spec or load_stress()
    profile, _ = _profile(spec)
    results = []
    for case in spec.cases:
        risk, pd_ = _decide(model, policy, profile, probe_events(spec, case))
        if case.kind == "anomaly":
            ok = OUTCOME_RANK[pd_.threshold_outcome] >= OUTCOME_RANK[Outcome.STEP_UP]
        else:
            ok = pd_.threshold_outcome is Outcome.ALLOW and pd_.outcome is Outcome.ALLOW
        results.append(StressResult(id=case.id, family=case.family, kind=case.kind, description=case.description,
                                    risk=risk, step_up_at=pd_.threshold.step_up_at,
                                    threshold_outcome=pd_.threshold_outcome, outcome=pd_.outcome,
                                    rules=[r.rule_id for r in pd_.rules], passed=ok))
    families: dict[str, dict[str, Any]] = {}
    for fam in Family:
        mine = [r for r in results if r.family is fam]
        families[fam.value] = {k: {"passed": sum(r.passed for r in mine if r.kind == k),
                                   "total": sum(1 for r in mine if r.kind == k)} for k in ("anomaly", "variation")}
        families[fam.value]["passed"] = all(r.passed for r in mine)
    clean = StressCase(id="sweep", family=Family.IDENTITY, kind="variation", description="sweep")
    sweeps = []
    for sw in spec.sweeps:
        risks = [_decide(model, policy, profile, probe_events(spec, clean, {sw.field: int(v)}))[0] for v in sw.values]
        jumps = np.abs(np.diff(risks))
        upto = sw.bounded_upto if sw.bounded_upto is not None else max(sw.values)
        bounded = jumps[np.array(sw.values[1:]) <= upto]
        sweeps.append({"field": sw.field, "values": sw.values, "risks": [round(r, 4) for r in risks],
                       "max_step": float(jumps.max()) if len(jumps) else 0.0, "bounded_upto": upto,
                       "max_step_bounded": float(bounded.max()) if len(bounded) else 0.0,
                       "monotone": bool(np.all(np.diff(risks) >= -1e-9)),
                       "within_bound": bool(bounded.max() <= CLIFF_BOUND) if len(bounded) else True})
    return {"cases": [r.model_dump(mode="json") for r in results], "families": families, "sweeps": sweeps,
            "cliff_bound": CLIFF_BOUND, "passed": all(r.passed for r in results)}


def stress_markdown(stress: dict[str, Any]) -> str:
    """The per-family table, threshold outcome and final outcome side by side."""
    lines = ["| family | case | kind | risk | step-up at | threshold outcome | final outcome | rules | pass |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in stress["cases"]:
        lines.append(f"| {r['family']} | {r['id']} | {r['kind']} | {r['risk']:.3f} | {r['step_up_at']:.2f} | "
                     f"{r['threshold_outcome']} | {r['outcome']} | {', '.join(r['rules']) or '-'} | "
                     f"{'yes' if r['passed'] else 'NO'} |")
    lines += ["", "| family | anomalies reaching step-up (model alone) | variations allowed | passed |",
              "| --- | --- | --- | --- |"]
    for fam, f in stress["families"].items():
        lines.append(f"| {fam} | {f['anomaly']['passed']}/{f['anomaly']['total']} | "
                     f"{f['variation']['passed']}/{f['variation']['total']} | {'yes' if f['passed'] else 'NO'} |")
    return "\n".join(lines)


def card_figures(card: dict[str, Any]) -> dict[str, Any]:
    m = card.get("test_metrics", {})
    return {"roc_auc": m.get("roc_auc"), "pr_auc": m.get("pr_auc"), "brier": m.get("brier"),
            "recall_at_step_up": {k: v["recall_at_step_up"] for k, v in m.get("per_attack_type", {}).items()},
            "benign_unusual_step_up_rate": {k: v["step_up_rate"] for k, v in m.get("benign_unusual", {}).items()}}


def lookalike_flag_rates(X: np.ndarray, events: Any, model: RiskModel, policy: PolicySet) -> dict[str, Any]:
    """Per benign look-alike type on these rows: share flagged (step-up or deny) by the thresholds alone and
    by the final outcome (thresholds and hard rules), as the demo reports it."""
    from risk.catalog import FEATURE_NAMES
    from risk.synth import BENIGN_UNUSUAL

    out: dict[str, Any] = {}
    scen = events["scenario"].to_numpy()
    for name in BENIGN_UNUSUAL:
        idx = np.flatnonzero((scen == name) & (events["label"].to_numpy() == 0))
        if not len(idx):
            continue
        risks = model.risk(X[idx])
        thr = fin = 0
        for k, i in enumerate(idx):
            row = events.iloc[i]
            ctx = {"resource.kind": row["kind"], "resource.sensitivity": row["sensitivity"],
                   "user.privileged": bool(row["privileged"]), "activity.action": row["action"]}
            pd_ = policy.decide(risk=float(risks[k]), signals={**dict(zip(FEATURE_NAMES, X[i].tolist(), strict=True)), **ctx})
            thr += pd_.threshold_outcome is not Outcome.ALLOW
            fin += pd_.outcome is not Outcome.ALLOW
        out[name] = {"events": int(len(idx)), "threshold_flagged": thr / len(idx), "final_flagged": fin / len(idx)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.stress", description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    import time

    from threadpoolctl import threadpool_limits

    from knowledge import POLICY_DIR
    from risk.policy import load_policies
    from risk.synth import generate_world
    from risk.training import train_on_world

    policy = load_policies(POLICY_DIR)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="openmp"):
        world = generate_world(users=args.users, days=args.days, seed=args.seed)
        model, X, split = train_on_world(world, policy, params={"max_iter": args.max_iter} if args.max_iter else None)
    secs = time.perf_counter() - t0
    stress = run_stress(model, policy)
    later = world.events[split.test].reset_index(drop=True)
    figures = {"train_seconds": round(secs, 1), "events": int(len(world.events)), **card_figures(model.card),
               "lookalikes_later_split": lookalike_flag_rates(X[split.test], later, model, policy),
               "stress": {"families": stress["families"], "sweeps": stress["sweeps"]}}
    print(json.dumps(figures, indent=1))
    print(stress_markdown(stress))
    if args.json:
        args.json.write_text(json.dumps({**figures, "stress_cases": stress["cases"]}, indent=1))
    return 0 if stress["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
