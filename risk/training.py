"""Training pipeline and model card: features, time split, fit, evaluate on the later split.

The card records what a reviewer needs to trust the model: version, feature
list and constraints, training window, data hash, ROC-AUC and PR-AUC on the
later split, per-attack-type recall at the policy's deny and step-up
thresholds, and how often the explanation's top family is the attack's
labelled cause family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from risk.explain import TreeShap, top_families
from risk.features import batch_features
from risk.model import RiskModel, train
from risk.policy import PolicySet
from risk.synth import ATTACKS, BENIGN_UNUSUAL, World

Progress = Callable[[str, float], None]
BURN_IN_DAYS = 3  # profiles are immature at first; those days only build baselines


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    test: np.ndarray
    split_ts: float


def time_split(world: World, *, test_days: int) -> Split:
    ts = world.events["ts"].to_numpy()
    start = world.start.timestamp()
    split_ts = start + (world.days - test_days) * 86400.0
    return Split(train=(ts >= start + BURN_IN_DAYS * 86400.0) & (ts < split_ts), test=ts >= split_ts, split_ts=split_ts)


def thresholds_per_row(events: pd.DataFrame, policy: PolicySet) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (step_up_at, deny_at) from the policy, by resource kind and tier."""
    pairs = events[["kind", "sensitivity"]].drop_duplicates()
    lookup = {(k, s): policy.threshold_for(kind=k, sensitivity=s) for k, s in pairs.itertuples(index=False)}
    keys = list(zip(events["kind"], events["sensitivity"], strict=True))
    return (np.array([lookup[k].step_up_at for k in keys]), np.array([lookup[k].deny_at for k in keys]))


def evaluate(model: RiskModel, X: np.ndarray, events: pd.DataFrame, policy: PolicySet,
             shap: TreeShap | None = None) -> dict[str, Any]:
    """Metrics on a labelled split (the model card's numbers)."""
    y = events["label"].to_numpy()
    risk = model.risk(X)
    step_up_at, deny_at = thresholds_per_row(events, policy)
    out: dict[str, Any] = {"rows": int(len(y)), "attacks": int(y.sum())}
    if 0 < y.sum() < len(y):
        out["roc_auc"] = float(roc_auc_score(y, risk))
        out["pr_auc"] = float(average_precision_score(y, risk))
    out["brier"] = float(np.mean((risk - y) ** 2)) if len(y) else None
    attack_idx = np.flatnonzero(y == 1)
    shap = shap or TreeShap(model)
    top = top_families(shap.contributions(X[attack_idx])[0]) if len(attack_idx) else np.array([])
    cause = events["cause_family"].to_numpy()[attack_idx]
    scen = events["scenario"].to_numpy()[attack_idx]
    per_type: dict[str, Any] = {}
    for name in ATTACKS:
        sel = scen == name
        idx = attack_idx[sel]
        if not len(idx):
            continue
        per_type[name] = {
            "events": int(len(idx)), "cause_family": ATTACKS[name].value,
            "recall_at_deny": float(np.mean(risk[idx] >= deny_at[idx])),
            "recall_at_step_up": float(np.mean(risk[idx] >= step_up_at[idx])),
            "top_family_is_cause": float(np.mean(top[sel] == cause[sel])),
        }
    out["per_attack_type"] = per_type
    out["top_family_is_cause"] = float(np.mean(top == cause)) if len(top) else None
    benign = y == 0
    out["benign_deny_rate"] = float(np.mean(risk[benign] >= deny_at[benign])) if benign.any() else None
    out["benign_step_up_rate"] = float(np.mean(risk[benign] >= step_up_at[benign])) if benign.any() else None
    unusual: dict[str, Any] = {}
    for name in BENIGN_UNUSUAL:
        sel = events["scenario"].to_numpy() == name
        if sel.any():
            unusual[name] = {"events": int(sel.sum()), "deny_rate": float(np.mean(risk[sel] >= deny_at[sel])),
                             "step_up_rate": float(np.mean(risk[sel] >= step_up_at[sel]))}
    out["benign_unusual"] = unusual
    return out


def train_on_world(world: World, policy: PolicySet, *, test_days: int = 7, progress: Progress | None = None,
                   params: dict[str, Any] | None = None) -> tuple[RiskModel, np.ndarray, Split]:
    """Featurize the whole history (batch path), fit on the earlier days, card on the later days.

    Returns the model, the feature matrix of every event and the split.
    """
    say = progress or (lambda *_: None)
    say("features", 0.0)
    X = batch_features(world.events)
    say("features", 1.0)
    split = time_split(world, test_days=test_days)
    y = world.events["label"].to_numpy()
    model = train(X[split.train], y[split.train], progress=lambda _s, f: say("trees", f), params=params)
    say("evaluate", 0.0)
    metrics = evaluate(model, X[split.test], world.events[split.test].reset_index(drop=True), policy)
    iso = lambda t: datetime.fromtimestamp(t, UTC).isoformat()  # noqa: E731
    ts = world.events["ts"].to_numpy()
    model.card.update({
        "created_from": {"generator": "risk.synth", "seed": world.seed, "users": int(len(world.users)),
                         "days": world.days},
        "training_window": {"start": iso(float(ts[split.train].min())), "end": iso(float(ts[split.train].max()))},
        "test_window": {"start": iso(float(ts[split.test].min())), "end": iso(float(ts[split.test].max()))},
        "policy_versions": policy.version_key(),
        "test_metrics": metrics,
    })
    say("evaluate", 1.0)
    return model, X, split
