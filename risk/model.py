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
          params: dict[str, Any] | None = None) -> RiskModel:
    """Fit the classifier with monotonic constraints, reporting progress per chunk of trees.

    Args:
        X: training features in catalog order.
        y: 1 for attack events, 0 otherwise.
        progress: called with ("trees", fraction) as boosting proceeds.
        params: overrides for :data:`TRAIN_PARAMS` (tests use fewer trees).
    """
    p = {**TRAIN_PARAMS, **(params or {})}
    total = p.pop("max_iter")
    clf = HistGradientBoostingClassifier(monotonic_cst=list(MONOTONE), warm_start=True, max_iter=0, **p)
    done = 0
    while done < total:
        done = min(total, done + CHUNK)
        clf.set_params(max_iter=done)
        clf.fit(X, y)
        if progress:
            progress("trees", done / total)
    h = hashlib.sha256((data_hash(X, y) + json.dumps({**p, "max_iter": total}, sort_keys=True)).encode()).hexdigest()
    ranges = {n: (float(np.nanmin(X[:, i])) if np.isfinite(X[:, i]).any() else float("nan"),
                  float(np.nanmax(X[:, i])) if np.isfinite(X[:, i]).any() else float("nan"))
              for i, n in enumerate(FEATURE_NAMES)}
    return RiskModel(clf=clf, version=f"rm-{h[:12]}", feature_names=FEATURE_NAMES, ranges=ranges,
                     card={"version": f"rm-{h[:12]}", "data_hash": data_hash(X, y), "params": {**p, "max_iter": total},
                           "features": list(FEATURE_NAMES),
                           "monotonic_constraints": dict(zip(FEATURE_NAMES, MONOTONE, strict=True)),
                           "train_rows": int(len(y)), "train_attack_share": float(np.mean(y))})
