"""The TreeSHAP kernel equals shap's TreeExplainer on every row: missing values, values on a split threshold,
monotone constraints, batches and single rows; shap takes over for model shapes the kernel does not handle."""

from __future__ import annotations

import numpy as np
import pytest
import shap
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

from risk.explain import TreeShap
from risk.model import RiskModel
from risk.treeshap import HGBTreeShap, UnsupportedModel

TOL = 1e-9


def _shap(clf, X):
    ex = shap.TreeExplainer(clf)
    phi = np.asarray(ex.shap_values(X, check_additivity=False), dtype=np.float64)
    return phi.reshape(X.shape), float(np.asarray(ex.expected_value).reshape(-1)[0])


def _random_model(seed: int, *, n: int = 3000, f: int = 12, nan_share: float = 0.15, **params):
    """A binary HGB fitted on random data with NaNs, a few integer-valued columns and an interaction."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    X[:, :3] = rng.integers(0, 6, size=(n, 3))  # ties and repeated values, like counts
    y = ((np.nan_to_num(X[:, 0]) + X[:, 3] * (X[:, 4] > 0) + rng.normal(scale=0.5, size=n)) > 1.5).astype(int)
    X[rng.random(X.shape) < nan_share] = np.nan
    X[:, f - 1] = rng.normal(size=n)  # a column never missing in training: NaN must still follow the model
    clf = HistGradientBoostingClassifier(max_iter=40, early_stopping=False, random_state=seed, **params).fit(X, y)
    return clf, X


def _on_thresholds(clf, X: np.ndarray, seed: int) -> np.ndarray:
    """Rows with values set exactly on split thresholds (they go left) and NaNs where a split tests them."""
    rng = np.random.default_rng(seed)
    splits = [(int(nd["feature_idx"]), float(nd["num_threshold"])) for (p,) in clf._predictors for nd in p.nodes
              if not nd["is_leaf"]]
    rows = X[rng.integers(0, len(X), 1500)].copy()
    for r in rows:
        for f, t in (splits[i] for i in rng.integers(0, len(splits), 4)):
            r[f] = t
        if rng.random() < 0.3:
            r[splits[rng.integers(0, len(splits))][0]] = np.nan
    return rows


@pytest.mark.parametrize(("seed", "params"), [
    (0, {}),
    (1, {"max_leaf_nodes": 31, "monotonic_cst": [1, 0, -1] + [0] * 9}),
    (2, {"max_depth": 3, "max_leaf_nodes": None, "learning_rate": 0.3}),
    (3, {"max_leaf_nodes": 63, "min_samples_leaf": 5, "l2_regularization": 1.0}),
])
def test_kernel_equals_shap_on_every_row(seed, params):
    clf, X = _random_model(seed, **params)
    k = HGBTreeShap(clf)
    rows = np.vstack([X[:2500], _on_thresholds(clf, X, seed)])
    rows[-5:, -1] = np.nan  # missing where training never saw a missing value
    assert np.isnan(rows).any(axis=1).mean() > 0.5
    ref, base = _shap(clf, rows)
    phi = k.shap_values(rows)
    assert abs(k.base_value - base) <= TOL
    assert np.abs(phi - ref).max() <= TOL
    # The efficiency property against sklearn's own prediction: a wrong branch at a threshold or a NaN shows here.
    margin = clf.decision_function(rows)
    assert np.abs(k.base_value + phi.sum(axis=1) - margin).max() <= TOL
    # The margin computed on the way is sklearn's, bit for bit (same splits, same summation order).
    assert np.array_equal(k.explain(rows)[1], margin)
    assert all(k.explain(rows[i])[1][0] == margin[i] for i in range(0, len(rows), 97))
    # The single-row path (scalar loops) gives the same numbers.
    for i in range(0, len(rows), 97):
        assert np.abs(k.shap_values(rows[i]) - ref[i]).max() <= TOL


def test_kernel_equals_shap_on_the_project_model(trained):
    model, X, _ = trained
    rows = X[np.random.default_rng(5).choice(len(X), 3000, replace=False)]
    assert np.isnan(rows).any(), "missing signals must be covered"
    ts = TreeShap(model)
    assert ts.engine == "kernel"
    phi, margin = ts.contributions(rows)
    ref, base = _shap(model.clf, rows)
    assert abs(ts.base_value - base) <= TOL and np.abs(phi - ref).max() <= TOL
    assert np.abs(ts.base_value + phi.sum(axis=1) - margin).max() <= 1e-9
    assert np.array_equal(margin, model.margin(rows))
    one, m1 = ts.contributions(rows[7])
    assert one.shape == (1, X.shape[1]) and np.abs(one[0] - ref[7]).max() <= TOL and m1[0] == margin[7]


def test_kernel_checks_the_columns():
    clf, X = _random_model(7)
    with pytest.raises(ValueError, match="12"):
        HGBTreeShap(clf).shap_values(X[:, :5])


def test_unsupported_models_fall_back_to_shap():
    rng = np.random.default_rng(3)
    X = np.c_[rng.integers(0, 5, 800), rng.normal(size=800)].astype(float)
    y = (X[:, 0] % 2 == 0).astype(int)
    with pytest.raises(UnsupportedModel, match="categorical"):
        HGBTreeShap(HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]).fit(X, y))
    with pytest.raises(UnsupportedModel, match="multi-class"):
        HGBTreeShap(HistGradientBoostingClassifier(max_iter=5).fit(X, X[:, 0] % 3))
    other = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    with pytest.raises(UnsupportedModel, match="not a fitted HistGradientBoostingClassifier"):
        HGBTreeShap(other)
    ts = TreeShap(RiskModel(clf=other, version="rm-test", feature_names=("a", "b"), ranges={}))
    assert ts.engine == "shap"
    phi, margin = ts.contributions(X[:50])
    assert phi.shape == (50, 2) and np.abs(ts.base_value + phi.sum(axis=1) - margin).max() < 1e-6
