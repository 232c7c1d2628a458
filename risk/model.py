"""The risk model: a monotone-constrained gradient-boosted classifier on the catalog features.

Trained on a time split (earlier days train, later days test) with fixed
seeds, saved with its model card beside it. Risk is the model's probability;
its margin is in log-odds, which is what TreeSHAP explains exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from risk.catalog import FEATURE_NAMES, MONOTONE

Progress = Callable[[str, float], None]
TRAIN_PARAMS: dict[str, Any] = {
    "max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20,
    "l2_regularization": 1.0, "early_stopping": False, "random_state": 0,
}
CHUNK = 20  # trees per progress step
# The benign value of every feature that can be missing (an optional signal, or a baseline the user does not
# have yet): a missing value must never score below the same event with this value (see route_missing).
BENIGN_VALUE: dict[str, float] = {
    "disk_encrypted": 1.0, "os_patch_age_days": 0.0, "geo_velocity_kmh": 0.0, "is_tor": 0.0, "is_hosting": 0.0,
    "rate_vs_baseline": 1.0, "bytes_vs_baseline": 1.0, "unusual_hour": 0.0,
}


def route_missing(clf: HistGradientBoostingClassifier) -> int:
    """Send missing values of every constrained feature to the riskier of two sides at each split.

    At a split on feature ``f`` with a known direction, a missing value keeps its learned side if that is
    the riskier child (higher values for +1, lower for -1), and otherwise goes where :data:`BENIGN_VALUE`
    goes. Monotone constraints bound every leaf under the riskier child above every leaf under the other,
    so in each tree the first split where the missing path and the benign path part sends the missing one
    to the riskier child: the margin with ``f`` missing is never below the margin with ``f`` benign.
    TreeSHAP reads the same node field, so explanations stay exact.

    Returns:
        How many splits were re-routed.
    """
    changed = 0
    for trees in clf._predictors:
        for pred in trees:
            nodes = pred.nodes
            for i in np.flatnonzero(nodes["is_leaf"] == 0):
                f = int(nodes["feature_idx"][i])
                mono = MONOTONE[f]
                if mono == 0:
                    continue
                risky_left = mono < 0
                if bool(nodes["missing_go_to_left"][i]) == risky_left:
                    continue
                benign = BENIGN_VALUE.get(FEATURE_NAMES[f])
                if benign is None:  # never missing in practice: the riskier side is the safe choice
                    want_left = risky_left
                else:
                    want_left = benign <= float(nodes["num_threshold"][i])
                if bool(nodes["missing_go_to_left"][i]) != want_left:
                    nodes["missing_go_to_left"][i] = want_left
                    changed += 1
    return changed


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def data_hash(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int8).tobytes())
    return h.hexdigest()


@dataclass
class RiskModel:
    """A trained model and what is known about it.

    Attributes:
        clf: the fitted classifier.
        version: ``rm-`` plus a hash of training data and parameters.
        feature_names: column order the model expects.
        ranges: per feature, the (min, max) seen in training (NaN ignored).
        card: the model card (metrics are filled in by :mod:`risk.modelcard`).
    """

    clf: HistGradientBoostingClassifier
    version: str
    feature_names: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]
    card: dict[str, Any] = field(default_factory=dict)

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of an attack."""
        return self.clf.decision_function(np.atleast_2d(X))

    def risk(self, X: np.ndarray) -> np.ndarray:
        return sigmoid(self.margin(X))

    def save(self, directory: Path) -> Path:
        """Write ``model.joblib`` and ``card.json`` under ``directory/version``."""
        out = directory / self.version
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump({"clf": self.clf, "version": self.version, "feature_names": self.feature_names,
                     "ranges": self.ranges}, out / "model.joblib")
        (out / "card.json").write_text(json.dumps(self.card, indent=2, sort_keys=True))
        cal = self.card.get("test_metrics", {}).get("calibration")
        if cal and cal.get("reliability"):
            from risk.calibration import plot_reliability

            plot_reliability(cal, out / "reliability.png")
        return out


class ModelNotFoundError(FileNotFoundError):
    """No trained model where one was expected."""


def load_model(path: Path) -> RiskModel:
    """Load a model saved by :meth:`RiskModel.save` (``path`` is the version directory)."""
    f = path / "model.joblib"
    if not f.exists():
        raise ModelNotFoundError(f"no model at {path}")
    d = joblib.load(f)
    if tuple(d["feature_names"]) != FEATURE_NAMES:
        raise ValueError(f"model {d['version']} was trained on other features; retrain it")
    card = json.loads((path / "card.json").read_text()) if (path / "card.json").exists() else {}
    return RiskModel(clf=d["clf"], version=d["version"], feature_names=tuple(d["feature_names"]),
                     ranges={k: tuple(v) for k, v in d["ranges"].items()}, card=card)


def train(X: np.ndarray, y: np.ndarray, *, progress: Progress | None = None,
          params: dict[str, Any] | None = None, sample_weight: np.ndarray | None = None) -> RiskModel:
    """Fit the classifier with monotonic constraints, reporting progress per chunk of trees.

    Args:
        X: training features in catalog order.
        y: 1 for attack events, 0 otherwise.
        progress: called with ("trees", fraction) as boosting proceeds.
        params: overrides for :data:`TRAIN_PARAMS` (tests use fewer trees).
        sample_weight: per-row weights (training from the store weighs analyst verdicts against the prior).
    """
    p = {**TRAIN_PARAMS, **(params or {})}
    total = p.pop("max_iter")
    clf = HistGradientBoostingClassifier(monotonic_cst=list(MONOTONE), warm_start=True, max_iter=0, **p)
    done = 0
    while done < total:
        done = min(total, done + CHUNK)
        clf.set_params(max_iter=done)
        clf.fit(X, y, sample_weight=sample_weight)
        if progress:
            progress("trees", done / total)
    rerouted = route_missing(clf)
    wh = "" if sample_weight is None else hashlib.sha256(np.ascontiguousarray(sample_weight, np.float64).tobytes()).hexdigest()
    h = hashlib.sha256((data_hash(X, y) + json.dumps({**p, "max_iter": total}, sort_keys=True) + wh).encode()).hexdigest()
    ranges = {n: (float(np.nanmin(X[:, i])) if np.isfinite(X[:, i]).any() else float("nan"),
                  float(np.nanmax(X[:, i])) if np.isfinite(X[:, i]).any() else float("nan"))
              for i, n in enumerate(FEATURE_NAMES)}
    return RiskModel(clf=clf, version=f"rm-{h[:12]}", feature_names=FEATURE_NAMES, ranges=ranges,
                     card={"version": f"rm-{h[:12]}", "data_hash": data_hash(X, y), "params": {**p, "max_iter": total},
                           "features": list(FEATURE_NAMES),
                           "monotonic_constraints": dict(zip(FEATURE_NAMES, MONOTONE, strict=True)),
                           "train_rows": int(len(y)), "train_attack_share": float(np.mean(y)),
                           "missing_routing": {"benign_values": BENIGN_VALUE, "splits_rerouted": rerouted}})
