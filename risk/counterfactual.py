"""Counterfactuals: the smallest set of actionable changes that would have changed the outcome.

Only signals a person can act on are changed (re-authenticate with a
phishing-resistant factor, use a compliant managed device, connect from the
corporate network, bring volume back to the user's normal). Every candidate is
verified by re-scoring it through the same model and the same policy
(thresholds and hard rules), so a counterfactual is never a guess.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from risk.catalog import BY_NAME, FEATURE_INDEX, FEATURE_NAMES, format_value
from risk.explain import Change, Counterfactual, CounterfactualAction
from risk.model import RiskModel
from risk.policy import OUTCOME_RANK, Outcome, PolicySet


@dataclass(frozen=True)
class Action:
    id: str
    label: str
    edit: Callable[[np.ndarray], np.ndarray]


def _set(**values: float) -> Callable[[np.ndarray], np.ndarray]:
    def edit(x: np.ndarray) -> np.ndarray:
        y = x.copy()
        for k, v in values.items():
            y[FEATURE_INDEX[k]] = v
        return y
    return edit


def _patched(x: np.ndarray) -> np.ndarray:
    y = _set(device_managed=1.0, device_compliant=1.0, edr_running=1.0, disk_encrypted=1.0, new_device=0.0,
             posture_drop_in_session=0.0)(x)
    i = FEATURE_INDEX["os_patch_age_days"]
    y[i] = 7.0 if math.isnan(x[i]) else min(x[i], 7.0)
    return y


def _normal_volume(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    for raw, ratio in (("requests_per_min", "rate_vs_baseline"), ("bytes_out_mb", "bytes_vs_baseline")):
        r = x[FEATURE_INDEX[ratio]]
        if not math.isnan(r) and r > 1.0:
            y[FEATURE_INDEX[raw]] = x[FEATURE_INDEX[raw]] / r
            y[FEATURE_INDEX[ratio]] = 1.0
    i = FEATURE_INDEX["distinct_resources_1h"]
    y[i] = min(x[i], 5.0)
    return y


ACTIONS: tuple[Action, ...] = (
    Action("reauth_phishing_resistant", "re-authenticate now with a phishing-resistant factor (WebAuthn)",
           _set(mfa_strength=4.0, minutes_since_mfa=0.0)),
    Action("compliant_managed_device", "use a managed, compliant, patched device with EDR running", _patched),
    Action("corporate_network", "connect from the corporate network",
           _set(is_tor=0.0, is_hosting=0.0, is_vpn=0.0, new_asn=0.0, new_country=0.0, asn_changed_in_session=0.0,
                geo_velocity_kmh=0.0)),
    Action("normal_volume", "bring request rate and data volume back to the user's normal level", _normal_volume),
)


def _changes(x: np.ndarray, y: np.ndarray) -> list[Change]:
    out = []
    for i, name in enumerate(FEATURE_NAMES):
        a, b = x[i], y[i]
        if (math.isnan(a) and math.isnan(b)) or a == b:
            continue
        f = BY_NAME[name]
        out.append(Change(feature=name, label=f.label, before=format_value(f, a), after=format_value(f, b)))
    return out


def find_counterfactuals(*, x: np.ndarray, outcome: Outcome, context: Mapping[str, Any], model: RiskModel,
                         policy: PolicySet, max_actions: int = 3) -> tuple[list[Counterfactual], str | None]:
    """Search subsets of :data:`ACTIONS`, smallest first, that improve the outcome.

    Args:
        x: the decision's feature vector.
        outcome: the decision's outcome.
        context: non-feature policy signals (``resource.kind``, ``resource.sensitivity``, ...).
        model: the model that scored the decision.
        policy: the policy that decided it.

    Returns:
        The counterfactuals (one per better outcome reachable, smallest change
        first, lowest risk among equals) and, when none exists, a plain note why.
    """
    if outcome is Outcome.ALLOW:
        return [], None
    useful = [a for a in ACTIONS if _changes(x, a.edit(x))]
    combos: list[tuple[Action, ...]] = [c for k in range(1, min(max_actions, len(useful)) + 1)
                                        for c in itertools.combinations(useful, k)]
    if not combos:
        return [], "no actionable signal differs from its best value; only a policy change or an exception would change this"
    Y = np.array([_apply(x, c) for c in combos])
    risks = model.risk(Y)
    results: list[Counterfactual] = []
    current = OUTCOME_RANK[outcome]
    for target in (Outcome.ALLOW, Outcome.STEP_UP):
        if OUTCOME_RANK[target] >= current:
            continue
        best: tuple[int, float, int] | None = None
        for j, (combo, y, r) in enumerate(zip(combos, Y, risks, strict=True)):
            signals = {**dict(zip(FEATURE_NAMES, y.tolist(), strict=True)), **context}
            got = policy.decide(risk=float(r), signals=signals).outcome
            if OUTCOME_RANK[got] <= OUTCOME_RANK[target]:
                key = (len(combo), float(r), j)
                if best is None or key < best:
                    best = key
        if best is None:
            continue
        j = best[2]
        signals = {**dict(zip(FEATURE_NAMES, Y[j].tolist(), strict=True)), **context}
        final = policy.decide(risk=float(risks[j]), signals=signals).outcome
        results.append(Counterfactual(
            target="allow" if target is Outcome.ALLOW else "step_up", risk_after=float(risks[j]), outcome_after=final.value, verified=True,
            actions=[CounterfactualAction(action=a.id, label=a.label, changes=_changes(x, a.edit(x))) for a in combos[j]]))
        if target is Outcome.ALLOW:
            break  # reaching allow is the answer; a step-up target adds nothing
    if results:
        return results, None
    return [], ("no combination of actionable changes would change this outcome: the signals that drive it "
                "(history, failed attempts, the resource's tier or a hard rule) are not the user's to change now")


def _apply(x: np.ndarray, combo: tuple[Action, ...]) -> np.ndarray:
    y = x
    for a in combo:
        y = a.edit(y)
    return y
