"""What-if: re-score a stored decision with changed signals, through the same model and policy.

The feature vector is rebuilt from the stored explanation, edited (by the
counterfactual actions of :mod:`risk.counterfactual`, or by explicit feature
values), re-scored and decided again with thresholds and hard rules, in the
decision's own context (resource kind and tier, privilege, action).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from risk.catalog import BY_NAME, FEATURE_INDEX, FEATURE_NAMES, MFA_STRENGTH, Unit, format_value
from risk.counterfactual import ACTIONS
from risk.engine import context_for
from risk.events import parse_event
from risk.explain import Change, feature_vector
from risk.policy import Outcome, PolicySet
from risk.store.queries import NotFound
from risk.store.queries import get_decision as load_decision
from tools.context import ToolContext
from tools.errors import BadField, ToolNotFound, ToolUnavailable
from tools.records import ToolInput

ActionId = Literal["reauth_phishing_resistant", "compliant_managed_device", "corporate_network", "normal_volume"]
ALIASES = {"mfa_method": "mfa_strength"}
_LEVEL_MAX = {"mfa_strength": max(MFA_STRENGTH.values()), "action_level": 2}


def coerce_change(key: str, value: bool | float | str) -> tuple[str, float]:
    """``(feature name, model value)`` for one requested change.

    Raises:
        BadField: on ``changes.<key>``, for an unknown feature or a value of the wrong kind.
    """
    name, where = ALIASES.get(key, key), f"changes.{key}"
    f = BY_NAME.get(name)
    if f is None:
        raise BadField(where, f"unknown feature {key!r}; known: {', '.join(FEATURE_NAMES)} (and mfa_method)")
    if isinstance(value, str):
        if name != "mfa_strength" or value not in MFA_STRENGTH:
            expect = f"one of {', '.join(MFA_STRENGTH)}" if name == "mfa_strength" else "a number"
            raise BadField(where, f"{value!r} is not {expect}")
        return name, float(MFA_STRENGTH[value])
    if isinstance(value, bool):
        if f.unit is not Unit.BOOL:
            raise BadField(where, f"{f.label} is not true/false; give a number")
        return name, 1.0 if value else 0.0
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise BadField(where, f"{value!r} is not a finite, non-negative number")
    if f.unit is Unit.BOOL and v not in (0.0, 1.0):
        raise BadField(where, f"{f.label} is true/false (or 1/0), got {value!r}")
    if f.unit is Unit.SHARE and v > 1.0:
        raise BadField(where, f"{f.label} is a share between 0 and 1, got {value!r}")
    if f.unit is Unit.LEVEL and (v != int(v) or v > _LEVEL_MAX[name]):
        raise BadField(where, f"{f.label} is a level from 0 to {_LEVEL_MAX[name]}, got {value!r}")
    return name, v


class WhatIfInput(ToolInput):
    decision_id: str = Field(description="The decision to re-score.")
    actions: list[ActionId] = Field(default_factory=list, description=(
        "Remedies to apply, in order: " + "; ".join(f"{a.id} = {a.label}" for a in ACTIONS) + "."))
    changes: dict[str, bool | float | str] = Field(
        default_factory=dict,
        description=("Feature values to set after the actions (feature name -> value): true/false for yes/no "
                     "signals, an MFA method name (webauthn, push, totp, sms, none) for mfa_strength or mfa_method."),
        json_schema_extra={"propertyNames": {"enum": [*FEATURE_NAMES, *ALIASES]}})

    @field_validator("changes")
    @classmethod
    def _known_features(cls, v: dict[str, bool | float | str]) -> dict[str, bool | float | str]:
        names = [coerce_change(k, x)[0] for k, x in v.items()]
        if len(set(names)) < len(names):
            raise BadField("changes.mfa_method", "give mfa_method or mfa_strength, not both")
        return v

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.actions and not self.changes:
            raise BadField("actions", "give actions or changes (or both)")
        return self


class Scored(BaseModel):
    risk: float
    outcome: Outcome
    threshold_outcome: Outcome
    rules: list[str] = Field(description="Ids of the hard rules that matched.")
    policy_id: str
    policy_version: int
    scope: str
    step_up_at: float
    deny_at: float


class WhatIfOutput(BaseModel):
    decision_id: str
    model_version: str
    actions: list[str]
    changes: list[Change] = Field(description="Every feature whose value the edits changed, as people read it.")
    recorded_risk: float
    recorded_outcome: Outcome
    before: Scored = Field(description="The unchanged signals re-scored now (same model and policy as after).")
    after: Scored
    flipped: bool = Field(description="True when the outcome after differs from the outcome before.")
    notes: list[str]


def _decide(policy: PolicySet, risk: float, x: np.ndarray, context: dict[str, Any]) -> Scored:
    pd_ = policy.decide(risk=risk, signals={**dict(zip(FEATURE_NAMES, x.tolist(), strict=True)), **context})
    t = pd_.threshold
    return Scored(risk=risk, outcome=pd_.outcome, threshold_outcome=pd_.threshold_outcome,
                  rules=[r.rule_id for r in pd_.rules], policy_id=t.policy_id, policy_version=t.policy_version,
                  scope=t.scope, step_up_at=t.step_up_at, deny_at=t.deny_at)


def _changed(x: np.ndarray, y: np.ndarray) -> list[Change]:
    out = []
    for i, name in enumerate(FEATURE_NAMES):
        a, b = float(x[i]), float(y[i])
        if a == b or (math.isnan(a) and math.isnan(b)):
            continue
        f = BY_NAME[name]
        out.append(Change(feature=name, label=f.label, before=format_value(f, a), after=format_value(f, b)))
    return out


def what_if(ctx: ToolContext, args: WhatIfInput) -> WhatIfOutput:
    """Re-score a decision as if some signals had been different (a compliant device, WebAuthn, the corporate
    network, or explicit feature values) and say whether the outcome flips; use it for "would X have been allowed if...?"."""
    if ctx.model is None:
        raise ToolUnavailable("what_if needs a trained risk model, and none is loaded")
    with ctx.sessions() as s:
        try:
            d, e = load_decision(s, args.decision_id)
        except NotFound:
            raise ToolNotFound("decision", args.decision_id) from None
        body, event, recorded = e.body, d.event, (d.risk, d.outcome, d.model_version)
        had_exception = d.exception is not None
        policy = ctx.policy_in_force(s)
    x = feature_vector(body["factors"])
    y = x.copy()
    notes = []
    by_id = {a.id: a for a in ACTIONS}
    for aid in args.actions:
        z = by_id[aid].edit(y)
        if not _changed(y, z):
            notes.append(f"action {aid} changes nothing here: those signals are already at their best values")
        y = z
    context = context_for(parse_event(event))
    context_after = dict(context)
    for key, value in args.changes.items():
        name, v = coerce_change(key, value)
        y[FEATURE_INDEX[name]] = v
        if name == "privileged":  # the rule signal follows the feature, or a rule would see the old value
            context_after["user.privileged"] = bool(v)
    risk_before, risk_after = (float(r) for r in ctx.model.risk(np.vstack([x, y])))
    before = _decide(policy, risk_before, x, context)
    after = _decide(policy, risk_after, y, context_after)
    changes = _changed(x, y)
    if not changes:
        notes.append("no signal changed, so neither did the risk")
    if recorded[2] != ctx.model.version:
        notes.append(f"the decision was scored by model {recorded[2]}; this re-score uses {ctx.model.version}")
    if before.outcome != recorded[1]:
        why = ("an approved exception was in force, which a what-if does not apply" if had_exception else
               "the policy or model changed since, or the session was revoked")
        notes.append(f"re-scored unchanged, the decision would now be {before.outcome.value} "
                     f"(recorded: {recorded[1]}): {why}")
    return WhatIfOutput(decision_id=args.decision_id, model_version=ctx.model.version, actions=list(args.actions),
                        changes=changes, recorded_risk=recorded[0], recorded_outcome=Outcome(recorded[1]),
                        before=before, after=after, flipped=after.outcome != before.outcome, notes=notes)
