"""Vendor sign-in records (Okta System Log, Entra signIn, OCSF 3002) mapped to native events plus the vendor's
own decision; bad records refused naming the vendor's field. Fixtures follow the vendors' published examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.ingest import Vendor, VendorFieldError, map_record
from integrations.ingest.ocsf_schema import schema_problems
from integrations.ingest.okta import parse_okta_map
from risk.events import parse_event

FIX = Path(__file__).parent / "fixtures" / "vendors"


def load(vendor: str, name: str) -> dict:
    return json.loads((FIX / vendor / f"{name}.json").read_text())


def mapped(vendor: str, name: str):
    return map_record(Vendor(vendor), load(vendor, name))


@pytest.mark.parametrize(("vendor", "name", "outcome", "level", "rule"), [
    ("okta", "success", "allow", "low", "Default Rule"),
    ("okta", "mfa_challenge", "challenge", "medium", "MFA for new devices"),
    ("okta", "risky_deny", "deny", "high", "Deny high risk"),
    ("okta", "proxy_failure", "deny", "low", "Default Rule"),
    ("entra", "success", "allow", "none", ""),
    ("entra", "mfa_required", "challenge", "none", "Require MFA for all users"),
    ("entra", "ca_block", "deny", "none", "Block legacy and untrusted locations"),
    ("entra", "risky_block", "deny", "high", "Block high sign-in risk"),
    ("entra", "azure_monitor", "allow", "none", ""),
    ("ocsf", "success", "allow", "none", "Default access"),
    ("ocsf", "challenge", "challenge", "medium", "Step-up on new device"),
    ("ocsf", "risky_block", "deny", "high", "Block high risk"),
])
def test_the_vendor_decision_is_read(vendor, name, outcome, level, rule):
    m = mapped(vendor, name)
    assert m.observed.outcome.value == outcome
    assert m.observed.risk_level == level
    assert m.observed.deciding_rule == rule
    assert parse_event(m.event.canonical()) == m.event  # a valid native event


def test_okta_reasons_by_family_and_signals():
    m = mapped("okta", "risky_deny")
    fams = {r.text: r.family for r in m.observed.reasons}
    assert fams["Anomalous Location"] == "network" and fams["Velocity"] == "network"
    assert m.event.event_id == "okta:f790999f-fe87-467a-9880-6982a583986c"
    assert (m.event.network.country, m.event.network.asn, m.event.network.lat) == ("SG", 4657, 1.2897)
    assert {r.text: r.family for r in mapped("okta", "mfa_challenge").observed.reasons}["Anomalous Device"] == "device"
    proxy = mapped("okta", "proxy_failure")
    assert proxy.event.network.is_vpn is True and proxy.observed.failure
    assert [r.text for r in proxy.observed.reasons] == ["Threat suspected"]


def test_okta_risk_string_is_not_json():
    assert parse_okta_map("{reasons=Anomalous Location, New Device, level=HIGH}") == {
        "reasons": "Anomalous Location, New Device", "level": "HIGH"}
    assert parse_okta_map("{level=LOW}") == {"level": "LOW"}
    with pytest.raises(ValueError):
        parse_okta_map("reasons: Anomalous Location")


def test_entra_codes_and_families():
    r = mapped("entra", "risky_block")
    assert {x.text: x.family for x in r.observed.reasons} == {"unlikelyTravel": "network", "leakedCredentials": "identity"}
    assert next(p for p in r.observed.policies if p.decided).controls == ["block"]
    bad = mapped("entra", "anonymized_bad_password")
    assert bad.observed.outcome.value == "deny" and bad.observed.failure  # 50126 is a wrong password
    assert not mapped("entra", "ca_block").observed.failure  # 53003 is a block, not a failed attempt
    ok = mapped("entra", "success")
    assert [p.name for p in ok.observed.policies] == ["Require compliant device for admins"]  # notEnabled dropped


def test_azure_monitor_export_is_unwrapped():
    m = mapped("entra", "azure_monitor")
    assert m.event.event_id == "entra:be5f6071-6301-4ee5-be62-ff5a759b0105"
    assert m.event.auth.mfa_method.value == "webauthn" and m.event.auth.minutes_since_mfa == 0
    assert m.event.network.asn == 3320
    raw = load("entra", "azure_monitor")
    raw["properties"]["status"]["errorCode"] = "x"
    with pytest.raises(VendorFieldError) as e:
        map_record(Vendor.ENTRA, raw)
    assert e.value.fields == ["properties.status.errorCode"]


def test_what_the_vendor_lacks_is_named_missing():
    entra = {m.field: m for m in mapped("entra", "success").observed.missing}
    assert "Graph v1.0" in entra["auth.minutes_since_mfa"].why and entra["auth.minutes_since_mfa"].assumed == 600
    assert {"network.is_tor", "network.is_hosting", "device.edr_running", "network.asn"} <= set(entra)
    okta = {m.field for m in mapped("okta", "success").observed.missing}
    assert {"network.is_tor", "network.is_hosting", "device.compliant"} <= okta
    assert "network.asn" not in okta  # Okta sends securityContext.asNumber
    sparse = mapped("okta", "missing_fields")
    assert sparse.event.network.country == "ZZ" and sparse.event.network.lat is None
    assert {"network.country", "network.lat", "network.is_vpn"} <= {m.field for m in sparse.observed.missing}
    ocsf = mapped("ocsf", "missing_fields")
    assert {"network.country", "network.asn", "device.managed"} <= {m.field for m in ocsf.observed.missing}


@pytest.mark.parametrize(("vendor", "name", "field"), [
    ("okta", "malformed_risk", "debugContext.debugData.risk"),
    ("okta", "malformed_outcome", "outcome.result"),
    ("okta", "malformed_ip", "client.ipAddress"),
    ("entra", "malformed_risk_level", "riskLevelDuringSignIn"),
    ("ocsf", "wrong_class", "class_uid"),
    ("ocsf", "malformed_risk_level", "risk_level_id"),
])
def test_malformed_records_name_the_vendor_field(vendor, name, field):
    with pytest.raises(VendorFieldError) as e:
        mapped(vendor, name)
    assert field in e.value.fields


def test_entra_error_code_as_text_is_read_and_non_numbers_are_refused():
    """Exports write ``status.errorCode`` as text ("53003"): it is the same code. Text that is no number is not."""
    assert mapped("entra", "malformed_error_code").observed.outcome.value == "deny"
    raw = load("entra", "malformed_error_code")
    raw["status"]["errorCode"] = "blocked"
    with pytest.raises(VendorFieldError) as e:
        map_record(Vendor.ENTRA, raw)
    assert e.value.fields == ["status.errorCode"]


@pytest.mark.parametrize(("vendor", "change", "field"), [
    ("okta", lambda r: r.pop("uuid"), "uuid"),
    ("okta", lambda r: r.update(eventType="user.lifecycle.create"), "eventType"),
    ("okta", lambda r: r["outcome"].update(result="MAYBE"), "outcome.result"),
    ("okta", lambda r: r.update(published="yesterday"), "published"),
    ("okta", lambda r: r["actor"].update(type="PublicClientApp"), "actor.type"),
    ("entra", lambda r: r.update(conditionalAccessStatus="blocked"), "conditionalAccessStatus"),
    ("entra", lambda r: r["appliedConditionalAccessPolicies"][1].update(result="ok"),
     "appliedConditionalAccessPolicies.1.result"),
    ("entra", lambda r: r.update(riskEventTypes_v2="unlikelyTravel"), "riskEventTypes_v2"),
    ("ocsf", lambda r: r["metadata"].pop("uid"), "metadata.uid"),
    ("ocsf", lambda r: r.update(activity_id=2, type_uid=300202), "activity_id"),
    ("ocsf", lambda r: r.pop("time"), "time"),
])
def test_unmappable_fields(vendor, change, field):
    raw = copy.deepcopy(load(vendor, "success"))
    change(raw)
    with pytest.raises(VendorFieldError) as e:
        map_record(Vendor(vendor), raw)
    assert field in e.value.fields


def test_native_callers_cannot_send_observed():
    """``observed`` is built by the ingest path beside the native event; the native contract refuses it."""
    ev = mapped("okta", "risky_deny")
    raw = {**ev.event.canonical(), "observed": ev.observed.model_dump(mode="json")}
    with pytest.raises(Exception) as e:
        parse_event(raw)
    assert getattr(e.value, "fields", None) == ["observed"]


def test_ocsf_fixtures_conform_to_the_3002_schema():
    for f in (FIX / "ocsf").glob("*.json"):
        problems = schema_problems(json.loads(f.read_text()))
        assert (not problems) == (f.stem not in ("wrong_class", "malformed_risk_level")), (f.stem, problems)


# any JSON-ish value at a field the mapper reads: it maps to a valid native event or names a vendor field
_json = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
                     | st.text(max_size=20), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                                                   max_size=3), max_leaves=6)
PATHS = {
    "okta": ["uuid", "published", "eventType", "outcome.result", "actor.alternateId", "actor.type", "client.ipAddress",
             "client.geographicalContext.country", "client.geographicalContext.geolocation.lat",
             "securityContext.asNumber", "securityContext.isProxy", "debugContext.debugData.risk",
             "debugContext.debugData.behaviors", "authenticationContext.externalSessionId", "target", "device"],
    "entra": ["id", "createdDateTime", "userPrincipalName", "status.errorCode", "conditionalAccessStatus",
              "riskLevelDuringSignIn", "riskEventTypes_v2", "appliedConditionalAccessPolicies", "location.countryOrRegion",
              "location.geoCoordinates.latitude", "deviceDetail.isCompliant", "deviceDetail", "ipAddress",
              "authenticationDetails"],
    "ocsf": ["metadata.uid", "time", "activity_id", "action_id", "disposition_id", "risk_level_id", "risk_details",
             "policy", "src_endpoint.ip", "src_endpoint.location.lat", "device.is_managed", "user", "auth_factors",
             "session.uid"],
}


def _set(raw: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


@settings(max_examples=150, deadline=None)
@given(vendor=st.sampled_from(sorted(PATHS)), data=st.data())
def test_property_maps_or_names_a_vendor_field(vendor, data):
    raw = copy.deepcopy(load(vendor, "success"))
    for path in data.draw(st.lists(st.sampled_from(PATHS[vendor]), min_size=1, max_size=3, unique=True)):
        _set(raw, path, data.draw(_json))
    try:
        m = map_record(Vendor(vendor), raw)
    except VendorFieldError as e:
        assert e.errors and all(err.field and err.field != "(record)" for err in e.errors), e
        return
    assert parse_event(m.event.canonical()) == m.event
