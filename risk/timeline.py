"""Session timelines: a session's decisions in order, and what changed at each step.

For every step after the first: the features whose values moved, each
feature's change in probability points, the change in risk and in outcome,
and the policy side: rules that began or stopped applying (a hard rule, a
revoked session), an exception that began or ended, and a change of the
threshold scope (another resource's tier). The per-feature point deltas plus
the change in base risk add up exactly to the risk delta, because each
decision's points add up to its risk.

When the outcome changed, the summary credits what changed it: a rule that
began to apply and sets the new outcome, an exception, or the thresholds of
another scope, before any signal (a revoked session is the revocation's doing,
not a 1-point drift in some feature).
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


class RuleChange(BaseModel):
    rule_id: str
    effect: str
    policy_id: str
    section: str
    description: str
    applies: bool  # True: began to apply at this step; False: stopped


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
    rule_changes: list[RuleChange] = []
    exception_change: str | None = None  # "began" | "ended": an exception in force for this user and resource
    scope_change: str | None = None  # "tier:internal -> tier:restricted": other thresholds apply
    cause: str = "signals"  # what changed the outcome (or moved the risk): rule | exception | scope | signals
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
            rules = _rule_changes(pd_, d)
            exc = "began" if d.get("exception") and not pd_.get("exception") else \
                "ended" if pd_.get("exception") and not d.get("exception") else None
            scope = (f"{pd_['threshold_scope']} -> {d['threshold_scope']}"
                     if pd_.get("threshold_scope") and d.get("threshold_scope") != pd_.get("threshold_scope") else None)
            setting = [r for r in rules if r.applies and r.effect == d["outcome"]]
            cause = "signals"
            if changed and setting:
                cause = "rule"
                what = "; ".join(f"rule {r.rule_id} ({r.policy_id} §{r.section}) now applies: {r.description}"
                                 for r in setting)
            elif changed and exc:
                cause = "exception"
                what = f"an exception for {d['user_id']} on {d['resource_id']} {exc}"
            elif changed and scope and d.get("threshold_outcome") != pd_.get("threshold_outcome") and \
                    (d.get("threshold_outcome") == d["outcome"]) and _crossed_by_scope(pd_, d):
                cause = "scope"
                what = (f"{d['resource_id']} is under other thresholds ({scope}: step-up at {d['step_up_at']:.2f}, "
                        f"deny at {d['deny_at']:.2f})")
            elif changes:
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
                              rule_changes=rules, exception_change=exc, scope_change=scope, cause=cause,
                              summary=f"{VERB[d['outcome']]} at {hhmm}" + (" (changed)" if changed else "") + f": {what}"))
        prev = (d, e)
    return Timeline(session_id=session_id, user_id=items[0][0]["user_id"] if items else "", steps=steps)


def _rule_changes(before: dict[str, Any], after: dict[str, Any]) -> list[RuleChange]:
    was = {r["rule_id"]: r for r in before.get("rules") or []}
    now = {r["rule_id"]: r for r in after.get("rules") or []}
    out = [RuleChange(rule_id=k, effect=r["effect"], policy_id=r["policy_id"], section=r.get("section") or "",
                      description=r.get("description") or "", applies=True) for k, r in now.items() if k not in was]
    out += [RuleChange(rule_id=k, effect=r["effect"], policy_id=r["policy_id"], section=r.get("section") or "",
                       description=r.get("description") or "", applies=False) for k, r in was.items() if k not in now]
    return out


def _crossed_by_scope(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """The new outcome comes from the new scope's thresholds: under the old ones, this risk would have
    given the old threshold outcome."""
    r = after["risk"]
    old = "deny" if r >= before["deny_at"] else "step_up" if r >= before["step_up_at"] else "allow"
    return old == before.get("threshold_outcome")
