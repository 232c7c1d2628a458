"""Explanations: exact additivity, points that sum to the risk, honest caveats, verified counterfactuals."""

from __future__ import annotations

import numpy as np
import pytest
import shap

from risk.catalog import FAMILIES, FEATURE_INDEX, FEATURE_NAMES
from risk.counterfactual import find_counterfactuals
from risk.explain import TreeShap, build_explanation, family_sums, quality_notes, to_points
from risk.model import sigmoid
from risk.policy import Outcome

CTX = {"resource.kind": "database", "resource.sensitivity": "restricted", "user.privileged": True,
       "activity.action": "read"}


@pytest.fixture(scope="module")
def ts(trained):
    return TreeShap(trained[0])


def test_additivity_on_many_events(trained, ts):
    """shap's own check (tests/explainers/test_tree.py): base + sum(phi) == model output."""
    model, X, _ = trained
    rows = X[np.random.default_rng(1).choice(len(X), 3000, replace=False)]
    assert np.isnan(rows).any(), "missing signals must be covered too"
    phi, margin = ts.contributions(rows)
    assert np.abs(ts.base_value + phi.sum(axis=1) - margin).max() < 1e-6
    # Independent reference: a fresh explainer with shap's own additivity check switched on.
    ref = shap.TreeExplainer(model.clf).shap_values(rows[:200], check_additivity=True)
    assert np.allclose(np.asarray(ref).reshape(phi[:200].shape), phi[:200], atol=1e-9)


def test_points_sum_exactly_to_the_risk_and_keep_signs(trained, ts):
    X = trained[1][:2000]
    phi, margin = ts.contributions(X)
    pts = to_points(phi, ts.base_value, margin)
    assert np.abs(sigmoid(ts.base_value) + pts.sum(axis=1) - sigmoid(margin)).max() < 1e-12
    assert np.all(np.sign(pts) == np.sign(phi))
    fam = family_sums(phi)
    assert fam.shape == (len(X), len(FAMILIES)) and np.allclose(fam.sum(axis=1), phi.sum(axis=1))


def test_explanation_record(trained, ts, policy):
    model, X, _ = trained
    i = int(np.argmax(model.margin(X)))
    x = X[i]
    phi, margin = ts.contributions(x)
    e = build_explanation(x=x, phi=phi[0], base=ts.base_value, margin=float(margin[0]), crossed=["c"],
                          counterfactuals=[], counterfactual_note=None, notes=[])
    assert e.status == "ok" and e.additivity_error < 1e-6
    assert [f.contribution for f in e.factors] == sorted((f.contribution for f in e.factors), reverse=True)
    assert e.top_family == max(e.families, key=e.families.get)
    assert e.base_risk + sum(f.points for f in e.factors) == pytest.approx(e.risk, abs=1e-12)
    top = e.factors[0]
    assert e.top_drivers[0].startswith(top.label + ": ") and f"({top.points:+.2f})" in e.top_drivers[0]


def test_weak_explanations_say_so(trained):
    model, X, _ = trained
    x = X[500].copy()
    x[FEATURE_INDEX["disk_encrypted"]] = np.nan
    x[FEATURE_INDEX["geo_velocity_kmh"]] = model.ranges["geo_velocity_kmh"][1] * 10
    notes = quality_notes(x, model, history_events=2, min_history=5)
    text = " | ".join(notes)
    assert "missing signal: disk encrypted" in text and "not assumed benign" in text
    assert "outside the training range: travel speed since previous login" in text
    assert "thin history: the user has 2 earlier events" in text
    e = build_explanation(x=x, phi=np.zeros(len(x)), base=0.0, margin=0.0, crossed=[], counterfactuals=[],
                          counterfactual_note=None, notes=notes)
    assert e.status == "partial"
    broken = build_explanation(x=x, phi=np.zeros(len(x)), base=0.0, margin=1.0, crossed=[], counterfactuals=[],
                               counterfactual_note=None, notes=[])
    assert broken.status == "unexplainable"


def _rescore(model, policy, x, cf):
    """Apply a counterfactual's stated changes to the vector, then score through model and policy."""
    from risk.counterfactual import ACTIONS

    y = x.copy()
    for a in cf.actions:
        y = next(act for act in ACTIONS if act.id == a.action).edit(y)
    r = float(model.risk(y)[0])
    return policy.decide(risk=r, signals={**dict(zip(FEATURE_NAMES, y.tolist(), strict=True)), **CTX}).outcome, r


def test_counterfactuals_really_flip_the_outcome(trained, policy):
    model, X, _ = trained
    risks = model.risk(X)
    flagged = np.flatnonzero(risks >= 0.25)[:60]
    assert len(flagged) > 20
    found = 0
    for i in flagged:
        x = X[i]
        outcome = policy.decide(risk=float(risks[i]), signals={**dict(zip(FEATURE_NAMES, x.tolist(), strict=True)), **CTX}).outcome
        cfs, note = find_counterfactuals(x=x, outcome=outcome, context=CTX, model=model, policy=policy)
        assert bool(cfs) != bool(note), "either a counterfactual or an honest note"
        for cf in cfs:
            found += 1
            got, r = _rescore(model, policy, x, cf)
            assert got.value == cf.outcome_after and r == pytest.approx(cf.risk_after)
            assert {"allow": 0, "step_up": 1, "deny": 2}[got.value] < {"allow": 0, "step_up": 1, "deny": 2}[outcome.value]
            assert all(c.before != c.after for a in cf.actions for c in a.changes)
    assert found > 10


def test_no_counterfactual_when_nothing_actionable_helps(trained, policy):
    model, X, _ = trained
    x = X[0].copy()
    from risk.counterfactual import ACTIONS

    for action in ACTIONS:  # everything actionable is already at its best: no action changes anything
        x = action.edit(x)
    x[FEATURE_INDEX["failed_attempts_1h"]] = 40.0  # not the user's to change now
    cfs, note = find_counterfactuals(x=x, outcome=Outcome.DENY, context=CTX, model=model, policy=policy)
    assert cfs == [] and "only a policy change or an exception would change this" in note
    assert find_counterfactuals(x=x, outcome=Outcome.ALLOW, context=CTX, model=model, policy=policy) == ([], None)
