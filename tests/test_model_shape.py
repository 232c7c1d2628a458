"""The model's shape matches security knowledge: monotone where the direction is known, missing never
benign, no cliff between adjacent counts, and one strong anomaly alone reaches step-up."""

from __future__ import annotations

import numpy as np
import pytest

from evals.stress import CLIFF_BOUND, load_stress, run_stress
from risk.catalog import FEATURE_INDEX, FEATURES
from risk.model import BENIGN_VALUE, route_missing


@pytest.fixture(scope="module")
def rows(trained):
    """A spread of real feature vectors from the later days (benign and attacks)."""
    _model, X, split = trained
    test = X[split.test]
    rng = np.random.default_rng(3)
    return test[rng.choice(len(test), size=min(150, len(test)), replace=False)]


@pytest.mark.parametrize("feature", [f for f in FEATURES if f.monotone != 0], ids=lambda f: f.name)
def test_risk_moves_only_in_the_known_direction(trained, rows, feature):
    model, X, _ = trained
    j = FEATURE_INDEX[feature.name]
    col = X[:, j][np.isfinite(X[:, j])]
    grid = np.unique(np.quantile(col, np.linspace(0, 1, 25))) if len(col) else np.array([0.0, 1.0])
    grid = np.concatenate([grid, [grid.max() * 10 + 1]])  # beyond anything seen in training
    margins = []
    for v in grid:
        Z = rows.copy()
        Z[:, j] = v
        margins.append(model.margin(Z))
    steps = np.diff(np.array(margins), axis=0) * feature.monotone
    assert steps.min() >= -1e-9, f"{feature.name}: risk moved against its direction by {-steps.min():.3g} log-odds"


@pytest.mark.parametrize("name", sorted(BENIGN_VALUE))
def test_a_missing_signal_never_scores_below_its_benign_value(trained, rows, name):
    model, _, _ = trained
    j = FEATURE_INDEX[name]
    missing, benign = rows.copy(), rows.copy()
    missing[:, j] = np.nan
    benign[:, j] = BENIGN_VALUE[name]
    gap = model.margin(missing) - model.margin(benign)
    assert gap.min() >= -1e-9, f"missing {name} scored {-gap.min():.3g} log-odds below the benign value"


def test_missing_routing_is_idempotent_and_kept_by_shap(trained, rows):
    from risk.explain import TreeShap

    model, _, _ = trained
    assert route_missing(model.clf) == 0  # already applied at training time
    Z = rows[:20].copy()
    Z[:, FEATURE_INDEX["geo_velocity_kmh"]] = np.nan
    Z[:, FEATURE_INDEX["rate_vs_baseline"]] = np.nan
    phi, margins = TreeShap(model).contributions(Z)
    np.testing.assert_allclose(margins, model.margin(Z), atol=1e-9)
    assert np.abs(TreeShap(model).base_value + phi.sum(axis=1) - margins).max() < 1e-6


@pytest.fixture(scope="module")
def shipped_like(policy):
    """The shipped recipe (200 trees, companions, label noise) on a mid-sized world: single signals need
    the numbers and the trees that the tiny shared fixture does not have."""
    from risk.synth import generate_world
    from risk.training import train_on_world

    return train_on_world(generate_world(users=150, days=14, seed=11), policy, test_days=4)[0]


@pytest.mark.slow
def test_counts_have_no_cliff_and_rise_monotonically(shipped_like, policy):
    stress = run_stress(shipped_like, policy)
    for sw in stress["sweeps"]:
        assert sw["monotone"], sw
        assert sw["within_bound"] and sw["max_step_bounded"] <= CLIFF_BOUND, (
            f"{sw['field']}: a step of {sw['max_step_bounded']:.2f} between adjacent values up to "
            f"{sw['bounded_upto']} (bound {CLIFF_BOUND}): "
            f"{list(zip(sw['values'], sw['risks'], strict=True))}")


@pytest.mark.slow
def test_one_strong_anomaly_alone_reaches_step_up_in_every_family(shipped_like, policy):
    stress = run_stress(shipped_like, policy, load_stress())
    failed = [(c["id"], round(c["risk"], 3), c["threshold_outcome"]) for c in stress["cases"] if not c["passed"]]
    assert not failed, failed
    assert set(stress["families"]) == {"identity", "device", "behavior", "network"}
    assert all(f["anomaly"]["total"] >= 2 and f["variation"]["total"] >= 1 for f in stress["families"].values())
