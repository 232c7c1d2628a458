"""The policy engine against the real Northwind documents, and the loader against bad ones."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from knowledge import POLICY_DIR
from risk.catalog import FEATURE_NAMES
from risk.policy import (
    Outcome,
    PolicyError,
    PolicySet,
    condition_holds,
    load_policies,
    outcome_for,
    outcomes_for,
    worst,
)

NAN = math.nan


@pytest.fixture(scope="module")
def ps() -> PolicySet:
    return load_policies(POLICY_DIR)


def benign(kind: str = "database", sensitivity: str = "restricted", **over: Any) -> dict[str, Any]:
    """A healthy request: managed, compliant, WebAuthn, fresh patches, nothing odd on the network."""
    s: dict[str, Any] = dict.fromkeys(FEATURE_NAMES, 0.0)
    s.update(mfa_strength=4.0, device_managed=1.0, device_compliant=1.0, edr_running=1.0, disk_encrypted=1.0)
    s.update(os_patch_age_days=12.0, geo_velocity_kmh=40.0)
    s.update({"resource.kind": kind, "resource.sensitivity": sensitivity, "user.privileged": False})
    s["activity.action"] = "read"
    s.update(over)
    return s


def fired(ps: PolicySet, signals: dict[str, Any]) -> set[str]:
    return {m.rule_id for m in ps.match_rules(signals)}


def test_loads_every_document(ps: PolicySet) -> None:
    assert ps.version_key() == (
        "POL-ACCESS-001@1,POL-AUTH-003@1,POL-DATA-008@1,POL-DEV-002@1,POL-EXC-007@1,POL-INC-010@1,"
        "POL-NET-005@1,POL-OT-004@1,POL-PRIV-009@1,POL-SES-006@1"
    )
    for d in ps.docs:
        assert len(d.content_hash) == 64 and not d.body.lstrip().startswith("---")
        for item in (*d.thresholds, *d.rules):
            assert item.section in d.sections
    assert ps.get("POL-DEV-002").sections["3-unmanaged-devices"][0] == "3. Unmanaged devices"


def test_thresholds_per_tier_and_kind_beats_tier(ps: PolicySet) -> None:
    got = {
        s: ps.threshold_for(kind="saas", sensitivity=s) for s in ("public", "internal", "confidential", "restricted")
    }
    assert {s: (t.step_up_at, t.deny_at) for s, t in got.items()} == {
        "public": (0.85, 0.97), "internal": (0.6, 0.9), "confidential": (0.4, 0.8), "restricted": (0.25, 0.6)
    }  # fmt: skip
    for sens in ("public", "restricted"):
        ot = ps.threshold_for(kind="ot", sensitivity=sens)
        assert (ot.scope, ot.policy_id, ot.step_up_at, ot.deny_at) == ("kind:ot", "POL-OT-004", 0.2, 0.5)
    assert ps.threshold_for(kind="database", sensitivity="restricted").scope == "tier:restricted"
    # stricter tiers never have looser thresholds, and the OT override is no looser than restricted
    scopes = ps.scopes()
    assert [t.scope for t in scopes][:4] == ["tier:public", "tier:internal", "tier:confidential", "tier:restricted"]
    for a, b in zip(scopes, scopes[1:], strict=False):
        assert b.step_up_at <= a.step_up_at and b.deny_at <= a.deny_at


def test_benign_traffic_fires_no_rule(ps: PolicySet) -> None:
    for kind in ("saas", "database", "cloud_api", "ot", "admin_console"):
        for sens in ("public", "internal", "confidential", "restricted"):
            assert fired(ps, benign(kind, sens)) == set(), (kind, sens)
    # everyday push MFA is not a rule outside OT
    assert fired(ps, benign("saas", "restricted", mfa_strength=2.0)) == set()


# rule id -> (signals that fire it, a near miss that must not)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ot-unmanaged-device-deny": (benign("ot", "internal", device_managed=0.0), benign("cloud_api", "internal", device_managed=0.0)),
    "ot-mfa-below-webauthn-step-up": (benign("ot", "internal", mfa_strength=3.0), benign("ot", "internal", mfa_strength=4.0)),
    "dev-unmanaged-restricted-deny": (benign(device_managed=0.0), benign(sensitivity="confidential", device_managed=0.0)),
    "dev-noncompliant-step-up": (benign(sensitivity="confidential", device_compliant=0.0), benign(sensitivity="internal", device_compliant=0.0)),
    "dev-edr-off-restricted-step-up": (benign(edr_running=False), benign(sensitivity="confidential", edr_running=False)),
    "dev-stale-patches-restricted-step-up": (benign(os_patch_age_days=61.0), benign(os_patch_age_days=60.0)),
    "auth-no-mfa-step-up": (benign(sensitivity="internal", mfa_strength=0.0), benign(sensitivity="public", mfa_strength=0.0)),
    "net-tor-deny": (benign(sensitivity="confidential", is_tor=1.0), benign(sensitivity="internal", is_tor=1.0)),
    "net-hosting-restricted-step-up": (benign(is_hosting=True), benign(sensitivity="confidential", is_hosting=True)),
    "net-impossible-travel-step-up": (benign(sensitivity="confidential", geo_velocity_kmh=1000.0), benign(sensitivity="confidential", geo_velocity_kmh=999.0)),
    "ses-posture-drop-step-up": (benign(posture_drop_in_session=1.0), benign(sensitivity="internal", posture_drop_in_session=2.0)),
    "data-bulk-transfer-step-up": (benign(sensitivity="confidential", bytes_out_mb=100.0), benign(sensitivity="confidential", bytes_out_mb=99.9)),
    "priv-admin-console-unmanaged-deny": (benign("admin_console", "internal", device_managed=0.0), benign("admin_console", "internal", device_managed=1.0)),
}  # fmt: skip


def test_every_rule_is_covered(ps: PolicySet) -> None:
    assert {r.id for d in ps.docs for r in d.rules} == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_and_near_miss_does_not(ps: PolicySet, rule_id: str) -> None:
    hit, miss = CASES[rule_id]
    assert rule_id in fired(ps, hit)
    assert rule_id not in fired(ps, miss)


def test_missing_signal_never_fires(ps: PolicySet) -> None:
    assert "net-tor-deny" not in fired(ps, benign(sensitivity="confidential", is_tor=NAN))
    assert "dev-stale-patches-restricted-step-up" not in fired(ps, benign(os_patch_age_days=NAN))
    assert "net-impossible-travel-step-up" not in fired(ps, benign(sensitivity="confidential", geo_velocity_kmh=None))
    assert fired(ps, {"resource.kind": "ot", "resource.sensitivity": "internal"}) == set()  # absent key = missing
    for missing in (NAN, None, np.float32("nan")):  # not even a negation holds for a missing signal
        assert not condition_holds("is_vpn", {"ne": 1.0}, missing)
        assert not condition_holds("resource.kind", {"not_in": ("ot",)}, missing)
    assert condition_holds("is_vpn", {"ne": 1.0}, False) and condition_holds("user.privileged", {"eq": 1.0}, True)


def test_decide_combines_threshold_and_rule_floor(ps: PolicySet) -> None:
    d = ps.decide(risk=0.05, signals=benign(device_managed=0.0, edr_running=0.0))
    assert (d.threshold_outcome, d.rule_floor, d.outcome) == (Outcome.ALLOW, Outcome.DENY, Outcome.DENY)
    assert [m.rule_id for m in d.rules] == ["dev-unmanaged-restricted-deny", "dev-edr-off-restricted-step-up"]
    d = ps.decide(risk=0.7, signals=benign("saas", "confidential", posture_drop_in_session=1.0))
    assert (d.threshold_outcome, d.rule_floor, d.outcome) == (Outcome.STEP_UP, Outcome.STEP_UP, Outcome.STEP_UP)
    d = ps.decide(risk=0.95, signals=benign("saas", "internal"))
    assert (d.outcome, d.rule_floor, d.threshold.scope) == (Outcome.DENY, Outcome.ALLOW, "tier:internal")
    assert ps.decide(risk=0.3, signals=benign("ot", "public")).outcome is Outcome.STEP_UP  # kind:ot, not tier:public


def test_boundaries_and_vectorised_outcomes(ps: PolicySet) -> None:
    t = ps.threshold_for(kind="database", sensitivity="restricted")
    assert ps.decide(risk=t.deny_at, signals=benign()).outcome is Outcome.DENY
    assert ps.decide(risk=t.step_up_at, signals=benign()).outcome is Outcome.STEP_UP
    assert ps.decide(risk=np.nextafter(t.step_up_at, 0), signals=benign()).outcome is Outcome.ALLOW
    risk = np.array([0.0, 0.39, 0.4, 0.79, 0.8, 1.0])
    assert outcomes_for(risk, 0.4, 0.8).tolist() == [0, 0, 1, 1, 2, 2]
    assert outcomes_for(risk, 0.4, 0.8).dtype == np.int8
    assert [outcome_for(float(r), 0.4, 0.8) for r in risk] == [Outcome.ALLOW] * 2 + [Outcome.STEP_UP] * 2 + [
        Outcome.DENY
    ] * 2
    with pytest.raises(ValueError):
        outcome_for(NAN, 0.4, 0.8)  # NaN would otherwise compare as "allow"
    with pytest.raises(ValueError):
        outcomes_for(np.array([0.1, NAN]), 0.4, 0.8)
    assert worst() is Outcome.ALLOW and worst(Outcome.STEP_UP, Outcome.DENY, Outcome.ALLOW) is Outcome.DENY


def test_with_thresholds_bumps_version_and_changes_decisions(ps: PolicySet) -> None:
    new = ps.with_thresholds(policy_id="POL-ACCESS-001", scope="tier:confidential", step_up_at=0.3, deny_at=0.7)
    doc, old = new.get("POL-ACCESS-001"), ps.get("POL-ACCESS-001")
    assert (old.version, doc.version) == (1, 2) and doc.content_hash != old.content_hash
    assert "POL-ACCESS-001@2" in new.version_key() and "POL-ACCESS-001@1" in ps.version_key()
    assert "step-up at **0.30**, deny at **0.70**" in doc.sections["5-confidential-tier"][1]
    assert "step-up at **0.60**, deny at **0.90**" in doc.sections["4-internal-tier"][1]
    sig = benign("saas", "confidential")
    assert ps.decide(risk=0.72, signals=sig).outcome is Outcome.STEP_UP
    d = new.decide(risk=0.72, signals=sig)
    assert d.outcome is Outcome.DENY and (d.threshold.policy_version, d.threshold.deny_at) == (2, 0.7)
    assert (
        new.with_thresholds(policy_id="POL-ACCESS-001", scope="tier:confidential", step_up_at=0.4, deny_at=0.8)
        .get("POL-ACCESS-001")
        .version
        == 3
    )
    with pytest.raises(PolicyError) as e:
        ps.with_thresholds(policy_id="POL-ACCESS-001", scope="tier:confidential", step_up_at=0.8, deny_at=0.7)
    assert (e.value.file, e.value.field) == ("access-tiers.md", "thresholds[2].step_up_at")
    with pytest.raises(PolicyError):
        ps.with_thresholds(policy_id="POL-ACCESS-001", scope="kind:ot", step_up_at=0.1, deny_at=0.2)


# --- bad documents ------------------------------------------------------------

TIERS = ("public", "internal", "confidential", "restricted")


def _write(d: Path, name: str, fm: dict[str, Any]) -> None:
    body = "".join(f"## {t}\n\nThresholds: step-up at **0.50**, deny at **0.90**.\n\n" for t in TIERS)
    body += "## rules\n\nRules `r-one` and `r-two`.\n"
    (d / name).write_text("---\n" + yaml.safe_dump(fm, sort_keys=False) + "---\n\n" + body)


def _base(pid: str = "POL-TEST-001", tiers: tuple[str, ...] = TIERS) -> dict[str, Any]:
    th = [{"tier": t, "step_up_at": 0.5, "deny_at": 0.9, "section": t} for t in tiers]
    rule = {"id": "r-one", "effect": "deny", "description": "D.", "section": "rules", "when": {"device_managed": False}}
    return {
        "id": pid,
        "version": 1,
        "title": "T",
        "owner_group": "g",
        "effective": "2026-09-01",
        "thresholds": th,
        "rules": [rule],
    }


def _rule(fm: dict[str, Any], **kw: Any) -> None:
    fm["rules"].append({"id": "r-two", "effect": "step_up", "description": "D.", "section": "rules", "when": {}} | kw)


BAD = {
    "unknown signal": (lambda fm: _rule(fm, when={"device_manged": False}), "a.md", "rules[1].when.device_manged"),
    "unknown operator": (lambda fm: _rule(fm, when={"os_patch_age_days": {"greater": 60}}), "a.md", "rules[1].when.os_patch_age_days.greater"),
    "wrong value type": (lambda fm: _rule(fm, when={"os_patch_age_days": {"gt": "60"}}), "a.md", "rules[1].when.os_patch_age_days.gt"),
    "ordered op on text": (lambda fm: _rule(fm, when={"resource.sensitivity": {"gte": "internal"}}), "a.md", "rules[1].when.resource.sensitivity.gte"),
    "unknown tier value": (lambda fm: _rule(fm, when={"resource.sensitivity": "secret"}), "a.md", "rules[1].when.resource.sensitivity"),
    "empty when": (lambda fm: _rule(fm), "a.md", "rules[1].when"),
    "bad effect": (lambda fm: _rule(fm, effect="allow", when={"is_tor": True}), "a.md", "rules[1].effect"),
    "duplicate rule id": (lambda fm: _rule(fm, id="r-one", when={"is_tor": True}), "a.md", "rules[1].id"),
    "unknown rule section": (lambda fm: _rule(fm, section="nope", when={"is_tor": True}), "a.md", "rules[1].section"),
    "threshold above 1": (lambda fm: fm["thresholds"][1].update(deny_at=1.2), "a.md", "thresholds[1].deny_at"),
    "step_up not below deny": (lambda fm: fm["thresholds"][0].update(step_up_at=0.9), "a.md", "thresholds[0].step_up_at"),
    "prose disagrees": (lambda fm: fm["thresholds"][0].update(step_up_at=0.55), "a.md", "thresholds[0].section"),
    "both tier and kind": (lambda fm: fm["thresholds"][0].update(kind="ot"), "a.md", "thresholds[0]"),
    "neither tier nor kind": (lambda fm: fm["thresholds"][0].pop("tier"), "a.md", "thresholds[0]"),
    "unknown front matter": (lambda fm: fm.update(owner="x"), "a.md", "owner"),
    "version not int": (lambda fm: fm.update(version="1"), "a.md", "version"),
    "tier without thresholds": (lambda fm: fm["thresholds"].pop(3), "policies", "thresholds"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_document_names_file_and_field(tmp_path: Path, case: str) -> None:
    mutate, file, field = BAD[case]
    d = tmp_path / "policies"
    d.mkdir()
    fm = _base()
    mutate(fm)
    _write(d, "a.md", fm)
    with pytest.raises(PolicyError) as e:
        load_policies(d)
    assert (e.value.file, e.value.field) == (file, field)
    assert str(e.value).startswith(f"{file}: {field}: ")


def test_base_test_document_is_valid(tmp_path: Path) -> None:
    _write(tmp_path, "a.md", _base())
    assert load_policies(tmp_path).version_key() == "POL-TEST-001@1"


@pytest.mark.parametrize(
    ("second", "field"),
    [
        ({"tiers": ("restricted",)}, "thresholds[0].tier"),  # same scope set twice
        ({"tiers": ()}, "rules[0].id"),  # r-one used in both documents
    ],
)
def test_conflicts_across_documents(tmp_path: Path, second: dict[str, Any], field: str) -> None:
    _write(tmp_path, "a.md", _base())
    _write(tmp_path, "b.md", _base("POL-TEST-002", **second))
    with pytest.raises(PolicyError) as e:
        load_policies(tmp_path)
    assert (e.value.file, e.value.field) == ("b.md", field)


def test_no_front_matter(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Just prose\n")
    with pytest.raises(PolicyError, match=r"^a\.md: front matter: "):
        load_policies(tmp_path)
