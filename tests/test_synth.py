"""The synthetic world: seeded, labelled with causes, every scenario present, native-event compatible."""

from __future__ import annotations

import numpy as np

from risk.catalog import Family
from risk.events import parse_event
from risk.synth import ATTACKS, BENIGN_UNUSUAL, RESOURCES, generate_world, row_to_event


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = (generate_world(users=30, days=7, seed=s) for s in (4, 4, 5))
    assert a.events.equals(b.events)
    assert not a.events["ts"].equals(c.events["ts"])


def test_every_scenario_labelled_with_its_cause(small_world):
    ev = small_world.events
    present = set(ev["scenario"])
    assert set(ATTACKS) <= present and set(BENIGN_UNUSUAL) <= present
    for name, fam in ATTACKS.items():
        rows = ev[ev["scenario"] == name]
        assert rows["label"].eq(1).all() and rows["cause_family"].eq(fam.value).all(), name
    benign = ev[~ev["scenario"].isin(list(ATTACKS))]
    assert benign["label"].eq(0).all() and benign["cause_family"].eq("").all()
    assert {f.value for f in Family} == set(ev.loc[ev["label"] == 1, "cause_family"])


def test_organisation_is_realistic(small_world):
    ev = small_world.events
    assert set(ev["kind"]) == {k for k, _ in RESOURCES.values()}
    assert set(ev["sensitivity"]) == {"public", "internal", "confidential", "restricted"}
    assert ev["user"].nunique() >= 70
    assert np.all(np.diff(ev["ts"].to_numpy()) >= 0), "events are time-ordered"
    assert ev["event_id"].is_unique
    # OT misuse comes from privileged people who do not work on OT.
    misuse = ev[ev["scenario"] == "ot_privilege_misuse"]
    assert misuse["kind"].eq("ot").all() and misuse["privileged"].eq(1).all()
    assert not misuse["role"].isin(["ot-engineer", "ot-operator"]).any()


def test_rows_are_valid_native_events(small_world):
    sample = small_world.events.sample(400, random_state=0).to_dict("records")
    for r in sample:
        ev = parse_event(row_to_event(r))
        assert ev.event_id == r["event_id"]


def test_travellers_stay_put_and_never_move_impossibly(small_world):
    from risk.catalog import FEATURE_INDEX
    from risk.features import batch_features

    ev = small_world.events
    X = batch_features(ev)
    trip = ev["scenario"].isin(["travel_vpn", "personal_travel"]).to_numpy()
    assert trip.any()
    per_user = ev[trip].groupby("user")["country"].nunique()
    assert (per_user <= 2).all(), "one destination per traveller (two if they took two trips)"
    v = X[trip, FEATURE_INDEX["geo_velocity_kmh"]]
    assert np.nanmax(v) < 1000, "benign travel is never faster than a plane"
