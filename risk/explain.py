"""Explanations: exact TreeSHAP per decision, grouped by factor family, in log-odds and in
probability points.

Log-odds: exact path-dependent TreeSHAP (our kernel in :mod:`risk.treeshap`, equal to shap's
``TreeExplainer``, which stays the fallback for model shapes the kernel does not support) gives contributions
``phi`` with ``base + sum(phi) == margin`` (checked to 1e-6 for every decision).

Probability points: the model's risk is ``sigmoid(margin)``. We split the gap
between the risk and the base risk ``sigmoid(base)`` in proportion to the
log-odds contributions: ``points_i = phi_i * (risk - sigmoid(base)) / (margin - base)``
(and ``phi_i * sigmoid'(base)`` when the margin equals the base). Because the
sigmoid is increasing the scale factor is positive, so every point keeps the
sign of its contribution, and ``sigmoid(base) + sum(points) == risk`` exactly
(up to float rounding). Points are what people read ("+0.21"); log-odds are
what the model adds up.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import shap
from pydantic import BaseModel

from risk.catalog import BY_NAME, FAMILIES, FEATURE_FAMILY_INDEX, FEATURE_NAMES, FEATURES, format_value
from risk.model import RiskModel, sigmoid
from risk.treeshap import HGBTreeShap, UnsupportedModel

ADDITIVITY_TOLERANCE = 1e-6
DecidedKind = Literal["threshold", "rule", "exception", "revocation"]


class Factor(BaseModel):
    feature: str
    label: str
    family: str
    value: float | None
    display: str
    contribution: float  # log-odds
    points: float  # probability points
    missing: bool = False


class Change(BaseModel):
    feature: str
    label: str
    before: str
    after: str


class CounterfactualAction(BaseModel):
    action: str
    label: str
    changes: list[Change]


class Counterfactual(BaseModel):
    target: Literal["allow", "step_up"]
    actions: list[CounterfactualAction]
    risk_after: float
    outcome_after: str
    verified: bool


class Explanation(BaseModel):
    base_value: float
    base_risk: float
    margin: float
    risk: float
    factors: list[Factor]
    families: dict[str, float]
    family_points: dict[str, float]
    top_family: str
    top_drivers: list[str]
    crossed: list[str]
    counterfactuals: list[Counterfactual]
    counterfactual_note: str | None
    status: Literal["ok", "partial", "unexplainable"]
    notes: list[str]
    additivity_error: float
    # What set the outcome: "threshold" (the model's risk against the policy's thresholds), a hard rule's id,
    # "exception" or "revocation". The factors explain the risk; when something else decided, they are context.
    decided_by: str = "threshold"
    decided_kind: DecidedKind = "threshold"


class TreeShap:
    """Exact TreeSHAP for one model: our kernel (:mod:`risk.treeshap`) where it supports the model, else shap.

    Attributes:
        engine: ``"kernel"`` or ``"shap"`` (which one computes the contributions).
    """

    def __init__(self, model: RiskModel):
        self.model = model
        self._kernel: HGBTreeShap | None = None
        try:
            self._kernel = HGBTreeShap(model.clf)
        except UnsupportedModel:
            self._explainer = shap.TreeExplainer(model.clf)
            self.base_value = float(np.asarray(self._explainer.expected_value).reshape(-1)[0])
        else:
            self.base_value = self._kernel.base_value
        self.engine = "shap" if self._kernel is None else "kernel"

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (phi, margin): log-odds contributions ``(n, F)`` and the model's margins ``(n,)``."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if self._kernel is not None:
            return self._kernel.explain(X)  # the margin is sklearn's, bit for bit, computed on the way
        phi = np.asarray(self._explainer.shap_values(X, check_additivity=False), dtype=np.float64)
        if phi.ndim == 3:  # some shap versions return one slice per class
            phi = phi[..., -1]
        return phi, self.model.margin(X)


def to_points(phi: np.ndarray, base: float, margin: np.ndarray) -> np.ndarray:
    """Probability points per feature; rows sum to ``sigmoid(margin) - sigmoid(base)``."""
    phi = np.atleast_2d(phi)
    margin = np.atleast_1d(margin)
    gap = margin - base
    p0 = float(sigmoid(base))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(np.abs(gap) > 1e-12, (sigmoid(margin) - p0) / gap, p0 * (1 - p0))
    return phi * scale[:, None]


def family_sums(values: np.ndarray) -> np.ndarray:
    """Sum feature columns into the four families, ``(n, 4)`` in :data:`FAMILIES` order."""
    values = np.atleast_2d(values)
    out = np.zeros((values.shape[0], len(FAMILIES)))
    np.add.at(out.T, np.array(FEATURE_FAMILY_INDEX), values.T)
    return out


def top_families(phi: np.ndarray) -> np.ndarray:
    """The family that pushed risk up the most, per row (vectorised, for evaluation)."""
    return np.array([FAMILIES[i].value for i in family_sums(phi).argmax(axis=1)])


def quality_notes(x: np.ndarray, model: RiskModel, history_events: int, min_history: int) -> list[str]:
    """Honest caveats: missing signals, values outside training, thin history."""
    notes = []
    for f, v in zip(FEATURES, x, strict=True):
        if math.isnan(v):
            if f.history and history_events < min_history:
                continue  # covered by the thin-history note below
            if f.optional or f.history:
                why = "no baseline or location to compare against" if f.history else "not reported by the caller"
                notes.append(f"missing signal: {f.label} ({why}); the model used its learned default for a "
                             "missing value, which is not assumed benign")
            continue
        lo, hi = model.ranges.get(f.name, (float("nan"), float("nan")))
        if not math.isnan(lo) and (v < lo or v > hi):
            notes.append(f"outside the training range: {f.format(v)} (trained on {format_value(f, lo)} to "
                         f"{format_value(f, hi)}); the contribution is extrapolated")
    if history_events < min_history:
        notes.append(f"thin history: the user has {history_events} earlier events (baselines need {min_history})")
    return notes


def build_explanation(*, x: np.ndarray, phi: np.ndarray, base: float, margin: float, crossed: list[str],
                      counterfactuals: list[Counterfactual], counterfactual_note: str | None,
                      notes: list[str], top_k: int = 3, decided_by: str = "threshold",
                      decided_kind: DecidedKind = "threshold") -> Explanation:
    """Assemble one decision's explanation from its contributions."""
    points = to_points(phi, base, np.array([margin]))[0]
    risk = float(sigmoid(margin))
    factors = []
    for f, v, c, p in zip(FEATURES, x, phi, points, strict=True):
        missing = bool(math.isnan(v))
        factors.append(Factor(feature=f.name, label=f.label, family=f.family.value, value=None if missing else float(v),
                              display=format_value(f, v), contribution=float(c), points=float(p), missing=missing))
    factors.sort(key=lambda f: (-f.contribution, f.feature))
    fam = family_sums(phi)[0]
    famp = family_sums(points)[0]
    families = {fam_.value: float(v) for fam_, v in zip(FAMILIES, fam, strict=True)}
    top_family = FAMILIES[int(np.argmax(fam))].value
    drivers = [f"{BY_NAME[f.feature].format(f.value if f.value is not None else float('nan'))} ({f.points:+.2f})"
               for f in factors[:top_k] if f.contribution > 0]
    err = abs(base + float(np.sum(phi)) - margin)
    status: Literal["ok", "partial", "unexplainable"] = "partial" if notes else "ok"
    if err >= ADDITIVITY_TOLERANCE:
        status = "unexplainable"
        notes = [*notes, f"explanation does not add up to the model output (error {err:.2e}); do not rely on it"]
    return Explanation(base_value=base, base_risk=float(sigmoid(base)), margin=margin, risk=risk, factors=factors,
                       families=families, family_points={k.value: float(v) for k, v in zip(FAMILIES, famp, strict=True)},
                       top_family=top_family, top_drivers=drivers, crossed=crossed, counterfactuals=counterfactuals,
                       counterfactual_note=counterfactual_note, status=status, notes=notes, additivity_error=err,
                       decided_by=decided_by, decided_kind=decided_kind)


def explanation_json(e: Explanation) -> dict[str, Any]:
    return e.model_dump(mode="json")


def feature_vector(factors: list[dict[str, Any]]) -> np.ndarray:
    """Rebuild the feature vector (catalog order) from stored factors."""
    by = {f["feature"]: f for f in factors}
    return np.array([np.nan if by[n]["value"] is None else by[n]["value"] for n in FEATURE_NAMES])
