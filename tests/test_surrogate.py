"""The surrogate of a vendor's decisions: fitted on earlier stored history, its fidelity measured per class on a
later held-out split, printed beside every explanation, and refused below the configured fidelity."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from integrations.ingest import Vendor
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.surrogate import SurrogateError, explain_by_surrogate, train_surrogate
from integrations.services.vendor_ingest import ingest_records
from integrations.settings import Settings
from risk.catalog import FEATURES, Family
from tests.apiserver import make_home

FIX = Path(__file__).parent / "fixtures" / "vendors"


def entra_history(n: int, *, noisy: bool) -> list[dict]:
    """Entra blocks sign-ins from unmanaged devices (CA "Require managed device"); allows the rest."""
    base = json.loads((FIX / "entra" / "success.json").read_text())
    rnd = random.Random(3)
    out = []
    for i in range(n):
        e = copy.deepcopy(base)
        e["id"] = f"00000000-0000-4000-a000-{i:012d}"
        e["createdDateTime"] = f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"
        e["userPrincipalName"] = f"u{i % 7}@contoso.com"
        managed = rnd.random() < 0.5
        e["deviceDetail"].update(isManaged=managed, isCompliant=managed)
        blocked = (not managed) != (noisy and rnd.random() < 0.45)
        if blocked:
            e["status"] = {"errorCode": 53003, "failureReason": "Blocked by Conditional Access"}
            e["conditionalAccessStatus"] = "failure"
            e["appliedConditionalAccessPolicies"][1].update(displayName="Require managed device", result="failure",
                                                            enforcedGrantControls=["block"])
        out.append(e)
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return make_home(tmp_path_factory.mktemp("surrogate"))


def test_a_faithful_surrogate_explains_with_its_fidelity(home, tmp_path):
    deps = ServiceDeps.from_runtime(Runtime(Settings(home=home.home, config=home.config,
                                                     database_url=f"sqlite:///{tmp_path / 'a.db'}")))
    with pytest.raises(SurrogateError, match="at least"):
        train_surrogate(deps=deps, vendor="entra")
    out = ingest_records(deps=deps, vendor=Vendor.ENTRA, records=entra_history(120, noisy=False))
    card = train_surrogate(deps=deps, vendor="entra")
    assert (card.train, card.held_out) == (84, 36) and card.held_out_from == "2026-11-04T12:00:00Z"
    assert set(card.per_class) == {"allow", "deny"} and card.fidelity >= 0.9
    last = out.items[-1]
    res = explain_by_surrogate(deps=deps, decision_id=last.decision_id, vendor="entra", min_fidelity=0.8)
    assert res.status == "explained" and res.surrogate_outcome == res.vendor_outcome
    device = [f.label for f in FEATURES if f.family is Family.DEVICE]  # Entra decided on the device
    assert res.path and all(any(p.startswith(label) for label in device) for p in res.path), res.path
    assert res.fidelity_line.startswith(f"surrogate fidelity {card.fidelity:.0%} on 36 later held-out entra")


def test_below_the_floor_it_refuses_and_says_why(home, tmp_path):
    deps = ServiceDeps.from_runtime(Runtime(Settings(home=home.home, config=home.config,
                                                     database_url=f"sqlite:///{tmp_path / 'b.db'}")))
    out = ingest_records(deps=deps, vendor=Vendor.ENTRA, records=entra_history(120, noisy=True))
    card = train_surrogate(deps=deps, vendor="entra")
    assert card.fidelity < 0.8  # the vendor's decisions are close to coin flips here
    res = explain_by_surrogate(deps=deps, decision_id=out.items[-1].decision_id, vendor="entra", min_fidelity=0.8)
    assert res.status == "refused" and res.path == [] and "below the configured 80%" in res.reason
    assert "per class:" in res.fidelity_line
