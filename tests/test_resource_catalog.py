"""The resource tier comes from the catalogue for a known resource: an event claiming a lower tier is decided
at the catalogue's tier, and the explanation says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.resources import load_catalog
from integrations.settings import SHIPPED_RESOURCES
from risk.audit import Ledger
from risk.engine import DecisionEngine
from risk.resources import CatalogError, ResourceCatalog
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.synth import RESOURCES, row_to_event


def test_the_shipped_catalogue_lists_the_demo_world_and_what_each_scope_governs():
    cat = load_catalog(SHIPPED_RESOURCES)
    assert {r: (x.kind, x.tier) for r, x in cat.resources.items()} == RESOURCES
    assert "restricted" in cat.governed_tiers("kind:ot")  # scada-plant1: why kind:ot changes are API-only
    assert cat.governed_tiers("tier:internal") == frozenset({"internal"})
    with pytest.raises(CatalogError, match="resources.x.tier"):
        ResourceCatalog.from_mapping({"resources": {"x": {"kind": "ot", "tier": "secret"}}})


def test_a_lower_claimed_tier_is_decided_at_the_catalogued_tier(trained, policy, small_world, tmp_path: Path):
    db = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(db)
    eng = DecisionEngine(sessions=session_factory(db), model=trained[0], policy=policy,
                         ledger=Ledger(witness_path=tmp_path / "w.json"), catalog=load_catalog(SHIPPED_RESOURCES))
    ev = row_to_event(small_world.events[small_world.events["scenario"] == "benign"].iloc[-1].to_dict())
    ev["event_id"] = "evt-claims-public"
    ev["resource"] = {"id": "payroll-db", "kind": "database", "sensitivity": "public"}
    res = eng.score(ev)
    assert res.decision["sensitivity"] == "restricted" and res.decision["threshold_scope"] == "tier:restricted"
    assert any("sent as database/public" in n and "database/restricted" in n for n in res.explanation["notes"])
    ev2 = {**ev, "event_id": "evt-unknown-resource", "resource": {"id": "new-thing", "kind": "saas",
                                                                  "sensitivity": "public"}}
    assert eng.score(ev2).decision["sensitivity"] == "public", "an unknown resource keeps its stated tier"
    db.dispose()
