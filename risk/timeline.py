"""Session timelines: a session's decisions in order, and what changed at each step.

For every step after the first: the features whose values moved, each
feature's change in probability points, the change in risk and in outcome.
The per-feature point deltas plus the change in base risk add up exactly to
the risk delta, because each decision's points add up to its risk.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

VERB = {"allow": "allowed", "step_up": "stepped up", "deny": "denied"}


class FeatureChange(BaseModel):
    feature: str
    label: str
    before: str
    after: str
    points_delta: float


class Step(BaseModel):
    decision_id: str
    event_id: str
    timestamp: str
    resource_id: str
    device_id: str | None
    outcome: str
    risk: float
    risk_delta: float
    base_delta: float
    outcome_changed: bool
    changes: list[FeatureChange]
    contribution_deltas: dict[str, float]  # points, every feature
    summary: str


class Timeline(BaseModel):
    session_id: str
    user_id: str
    steps: list[Step]


def build_timeline(session_id: str, items: list[tuple[dict[str, Any], dict[str, Any]]]) -> Timeline:
    """``items``: (decision record with ``event``, explanation body) pairs in session order."""
    steps: list[Step] = []
    prev: tuple[dict[str, Any], dict[str, Any]] | None = None
    for d, e in items:
        pts = {f["feature"]: f["points"] for f in e["factors"]}
        shown = {f["feature"]: f for f in e["factors"]}
        hhmm = d["timestamp"][11:16]
        device = (d.get("event") or {}).get("device", {}).get("id")
        if prev is None:
            steps.append(Step(decision_id=d["decision_id"], event_id=d["event_id"], timestamp=d["timestamp"],
                              resource_id=d["resource_id"], device_id=device, outcome=d["outcome"], risk=d["risk"],
                              risk_delta=0.0, base_delta=0.0, outcome_changed=False, changes=[],
                              contribution_deltas={k: 0.0 for k in pts},
                              summary=f"started at {hhmm}: {VERB[d['outcome']]} {d['resource_id']}, risk {d['risk']:.2f}"))
        else:
            pd_, pe = prev
            ppts = {f["feature"]: f["points"] for f in pe["factors"]}
            pshown = {f["feature"]: f for f in pe["factors"]}
            deltas = {k: pts[k] - ppts[k] for k in pts}
            changes = [FeatureChange(feature=k, label=shown[k]["label"], before=pshown[k]["display"],
                                     after=shown[k]["display"], points_delta=deltas[k])
                       for k in pts if shown[k]["display"] != pshown[k]["display"]]
            changes.sort(key=lambda c: -abs(c.points_delta))
            risk_delta = d["risk"] - pd_["risk"]
            changed = d["outcome"] != pd_["outcome"]
            if changes:
                c = changes[0]
                what = f"{c.label} {c.before} -> {c.after}"
                if device and c.feature in ("edr_running", "device_compliant", "device_managed", "posture_drop_in_session"):
                    what += f" on {device}"
                what += f", {c.points_delta:+.2f}"
            else:
                what = f"no signal changed, risk {risk_delta:+.2f}"
            steps.append(Step(decision_id=d["decision_id"], event_id=d["event_id"], timestamp=d["timestamp"],
                              resource_id=d["resource_id"], device_id=device, outcome=d["outcome"], risk=d["risk"],
                              risk_delta=risk_delta, base_delta=e["base_risk"] - pe["base_risk"],
                              outcome_changed=changed, changes=changes, contribution_deltas=deltas,
                              summary=f"{VERB[d['outcome']]} at {hhmm}" + (" (changed)" if changed else "") + f": {what}"))
        prev = (d, e)
    return Timeline(session_id=session_id, user_id=items[0][0]["user_id"] if items else "", steps=steps)
