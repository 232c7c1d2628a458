"""Real, published vendor samples (tests/fixtures/vendor_real/, sources in its README.md) through the same path
``glassgate import`` takes: decode the file, open the vendor's envelope, map each record. Every record either
maps to a valid native event with the vendor's decision beside it, or is refused naming the vendor's field.
Samples whose class has no published example here are varied from a real one, and say so."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from integrations.ingest import Vendor, VendorFieldError, map_record
from integrations.ingest.records import BadBody, iter_records, unwrap
from risk.events import parse_event

REAL = Path(__file__).parent / "fixtures" / "vendor_real"

# (file, record index) -> the vendor's outcome, or ("rejected", the vendor field named), or ("body", None)
EXPECTED: dict[tuple[str, int | None], tuple[str, str | None]] = {
    ("okta/elastic_okta_system_events.ndjson", 0): ("rejected", "eventType"),  # user.session.end: not a sign-in
    ("okta/elastic_okta_system_events.ndjson", 1): ("allow", None),
    ("okta/elastic_okta_system_events.ndjson", 2): ("allow", None),
    ("okta/ocsf_examples_account_change.json", 0): ("rejected", "eventType"),
    ("okta/ocsf_examples_authentication.json", 0): ("allow", None),
    ("okta/ocsf_examples_detection_finding.json", 0): ("rejected", "eventType"),
    ("okta/ocsf_examples_group_management.json", 0): ("rejected", "eventType"),
    ("okta/panther_okta_login_signal.json", 0): ("allow", None),
    ("okta/panther_okta_login_signal.json", 1): ("deny", None),
    ("okta/panther_okta_potentially_stolen_session.json", 0): ("rejected", "published"),  # "redacted"
    ("okta/panther_okta_sso_to_aws.json", 0): ("rejected", "published"),  # trimmed: no published
    ("okta/panther_sign_in_from_rogue_state.json", 0): ("allow", None),
    ("entra/elastic_non_interactive_user_sample.ndjson", 0): ("allow", None),
    ("entra/elastic_non_interactive_user_sample.ndjson", 1): ("allow", None),
    ("entra/elastic_service_principal_time_as_string.ndjson", 0): ("rejected", "category"),
    ("entra/elastic_signinlogs_raw.ndjson", 0): ("challenge", None),  # 50140: the "stay signed in?" interrupt
    ("entra/elastic_signinlogs_raw.ndjson", 1): ("challenge", None),
    ("entra/elastic_signinlogs_raw.ndjson", 2): ("rejected", "category"),  # a service principal
    ("entra/elastic_signinlogs_raw.ndjson", 3): ("rejected", "category"),  # a managed identity
    ("entra/graph_beta_2018_signin_get.json", 0): ("allow", None),
    ("entra/graph_beta_signin_list.json", 0): ("deny", None),
    ("entra/graph_v1_signin_get.json", 0): ("allow", None),
    ("ocsf/ocsf_examples_aws_console_login_1.0.0-rc.2.json", 0): ("allow", None),
    ("ocsf/ocsf_examples_aws_console_login_1.1.0.json", 0): ("allow", None),
    ("ocsf/ocsf_examples_aws_console_login_1.1.0_no_status_id.json", 0): ("allow", None),
    ("ocsf/ocsf_examples_aws_credential_challenge_1.5.0.json", None): ("body", None),  # a trailing comma
    ("ocsf/ocsf_examples_aws_credential_challenge_1.5.0_comma_removed.json", 0): ("rejected", "action_id"),
    ("ocsf/ocsf_examples_github_sso_1.3.0.json", 0): ("rejected", "action_id"),  # no status at all
    ("ocsf/ocsf_examples_okta_session_start_1.3.0.json", 0): ("allow", None),
    ("ocsf/ocsf_examples_windows_4624.json", 0): ("allow", None),
    ("ocsf/ocsf_examples_windows_4625.json", 0): ("deny", None),
}


def records(rel: str) -> list:
    vendor = rel.split("/", 1)[0]
    return unwrap(vendor, list(iter_records((REAL / rel).read_bytes())))


def sample_files() -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in REAL.glob("*/*") if p.suffix in (".json", ".ndjson"))


def one(rel: str, index: int = 0):
    return map_record(Vendor(rel.split("/", 1)[0]), records(rel)[index])


def test_every_sample_record_is_classified():
    """A sample added without an expectation fails here (and one removed leaves a stale expectation)."""
    seen = set()
    for rel in sample_files():
        try:
            seen |= {(rel, i) for i in range(len(records(rel)))}
        except BadBody:
            seen.add((rel, None))
    assert seen == set(EXPECTED)


@pytest.mark.parametrize(("rel", "index"), sorted(EXPECTED, key=str))
def test_real_sample_maps_or_names_the_vendor_field(rel, index):
    want, field = EXPECTED[(rel, index)]
    vendor = Vendor(rel.split("/", 1)[0])
    if want == "body":
        with pytest.raises(BadBody, match=r"not JSON: .* at line \d+ column \d+"):
            records(rel)
        return
    raw = records(rel)[index]
    if want == "rejected":
        with pytest.raises(VendorFieldError) as e:
            map_record(vendor, raw)
        assert field in e.value.fields, e.value
        assert all(p.message for p in e.value.errors)
        return
    m = map_record(vendor, raw)
    assert m.observed.outcome.value == want
    assert m.observed.vendor is vendor
    assert parse_event(m.event.canonical()) == m.event  # a valid native event
    assert m.observed.missing and all(x.field and x.why for x in m.observed.missing)  # what the vendor lacks, named


def missing(m) -> set[str]:
    return {x.field for x in m.observed.missing}


# ----------------------------------------------------------------------------- Okta


def test_okta_export_without_a_zone_is_utc_and_log_only_security_data_gives_the_risk():
    m = one("okta/panther_sign_in_from_rogue_state.json")  # published "2024-08-15 15:05:09.154000000"
    assert m.event.canonical()["timestamp"] == "2024-08-15T15:05:09.154000Z"
    assert m.observed.risk_level == "low" and m.observed.reasons == []  # every behavior NEGATIVE
    raw = records("okta/panther_sign_in_from_rogue_state.json")[0]
    dbg = raw["debugContext"]["debugData"]
    sec = json.loads(dbg["logOnlySecurityData"])
    sec["risk"] = {"level": "HIGH", "reasons": "Anomalous Location, Anomalous Device"}
    sec["behaviors"]["New Device"] = "POSITIVE"
    for form in (json.dumps(sec), sec):  # JSON text as Okta logs it, or an object an export decoded
        dbg["logOnlySecurityData"] = form
        m = map_record(Vendor.OKTA, raw)
        assert m.observed.risk_level == "high"
        assert {(r.text, r.family) for r in m.observed.reasons} == {
            ("Anomalous Location", "network"), ("Anomalous Device", "device"), ("New Device", "device")}


def test_okta_risk_text_in_either_notation_and_order():
    raw = records("okta/elastic_okta_system_events.ndjson")[1]
    dbg = raw["debugContext"]["debugData"]
    for text in ("{reasons=Anomalous Location, Anomalous Device, level=HIGH}", "{level=HIGH, reasons=Anomalous "
                 "Location, Anomalous Device}", '{"level":"HIGH","reasons":"Anomalous Location, Anomalous Device"}'):
        dbg["risk"] = text
        m = map_record(Vendor.OKTA, raw)
        assert m.observed.risk_level == "high", text
        assert [r.text for r in m.observed.reasons] == ["Anomalous Location", "Anomalous Device"], text
    dbg["risk"] = "{level=SEVERE}"
    with pytest.raises(VendorFieldError) as e:
        map_record(Vendor.OKTA, raw)
    assert e.value.fields == ["debugContext.debugData.risk"]
    dbg["risk"] = "{level=LOW}"
    dbg["behaviors"] = ("{New Geo-Location=UNKNOWN, New Device=UNKNOWN, New IP=POSITIVE, New State=BAD_REQUEST, "
                        "riskIP=POSITIVE, Velocity Behavior=POSITIVE}")  # values Okta writes when it cannot tell
    assert {(r.text, r.family) for r in map_record(Vendor.OKTA, raw).observed.reasons} == {
        ("New IP", "network"), ("riskIP", "network"), ("Velocity Behavior", "network")}


def test_okta_sign_on_policy_rule_and_admin_console():
    pol = one("okta/elastic_okta_system_events.ndjson", 2)
    assert pol.observed.deciding_rule == "Default Rule"
    assert (pol.event.network.country, pol.event.network.lat) == ("US", 37.7201)
    assert "network.asn" in missing(pol) and "network.is_vpn" in missing(pol)  # securityContext all null
    admin = one("okta/ocsf_examples_authentication.json")  # user.session.start into the Okta Admin Console
    assert (admin.event.resource.id, admin.event.resource.kind.value) == ("okta-admin-console", "admin_console")
    assert admin.event.device.disk_encrypted is True and admin.event.device.managed is False
    failed = one("okta/panther_okta_login_signal.json", 1)
    assert failed.observed.failure and failed.observed.outcome.value == "deny"


def test_okta_addresses_geography_outcomes_and_targets():
    """Varied from the real user.session.start: IPv6, a null geographicalContext and target, an address that
    is no address, and the outcome values Okta writes that are no decision."""
    base = records("okta/elastic_okta_system_events.ndjson")[1]
    raw = copy.deepcopy(base)
    raw["client"]["ipAddress"] = "2001:DB8::8a2e:370:7334"
    raw["client"]["geographicalContext"] = None
    raw["target"] = None
    m = map_record(Vendor.OKTA, raw)
    assert m.event.network.ip == "2001:db8::8a2e:370:7334"
    assert m.event.network.country == "ZZ" and {"network.country", "network.lat"} <= missing(m)
    raw["client"]["ipAddress"] = None
    assert "network.ip" in missing(map_record(Vendor.OKTA, raw))
    raw["client"]["ipAddress"] = "555.555.55.5"
    with pytest.raises(VendorFieldError) as e:
        map_record(Vendor.OKTA, raw)
    assert e.value.fields == ["client.ipAddress"]
    for result, want in (("SUCCESS", "allow"), ("ALLOW", "allow"), ("CHALLENGE", "challenge"), ("FAILURE", "deny"),
                         ("DENY", "deny")):
        raw = copy.deepcopy(base)
        raw["outcome"]["result"] = result
        assert map_record(Vendor.OKTA, raw).observed.outcome.value == want
    for result in ("SKIPPED", "UNKNOWN", "MAYBE"):
        raw["outcome"]["result"] = result
        with pytest.raises(VendorFieldError) as e:
            map_record(Vendor.OKTA, raw)
        assert e.value.fields == ["outcome.result"] and result in str(e.value)


# ----------------------------------------------------------------------------- Entra


def test_entra_interrupts_challenge_and_non_people_are_refused():
    kmsi = one("entra/elastic_signinlogs_raw.ndjson", 0)  # Azure Monitor, createdDateTime -05:00, 7 digits
    assert kmsi.observed.outcome.value == "challenge" and not kmsi.observed.failure
    assert kmsi.observed.status_detail.startswith("50140")
    assert kmsi.event.canonical()["timestamp"] == "2019-10-18T09:45:48.072989Z"
    with pytest.raises(VendorFieldError) as e:
        one("entra/elastic_signinlogs_raw.ndjson", 2)
    assert "only a person's sign-in" in str(e.value)


def test_entra_graph_examples():
    v1 = one("entra/graph_v1_signin_get.json")  # v1.0: no riskEventTypes_v2, no authenticationDetails
    assert v1.observed.policies == []  # both policies notEnabled: nothing decided
    assert {"auth.minutes_since_mfa", "network.asn", "device.managed", "device.compliant"} <= missing(v1)
    bad = one("entra/graph_beta_signin_list.json")  # 50126, geoCoordinates {}, duplicate keys
    assert bad.observed.failure and bad.event.network.asn == 3598 and "network.lat" in missing(bad)
    assert bad.event.resource.kind.value == "admin_console"
    old = one("entra/graph_beta_2018_signin_get.json")  # countryOrRegion "USA", mfaDetail, riskLevel
    assert (old.event.network.country, old.event.auth.mfa_method.value, old.observed.risk_level) == ("US", "sms", "low")
    assert old.event.device.managed and old.event.device.compliant
    assert [(p.name, p.controls) for p in old.observed.policies] == [("capPolicy", ["mfa", "TOU"])]


def test_entra_text_shaped_exports():
    """Varied from the real Graph v1.0 example: the Log Analytics row (TitleCase columns, dynamic columns as
    JSON text), an error code written as text and a createdDateTime without its Z."""
    g = records("entra/graph_v1_signin_get.json")[0]
    row = {"TimeGenerated": "2020-03-13T19:16:02Z", "Type": "SigninLogs", "Id": g["id"],
           "CreatedDateTime": g["createdDateTime"].rstrip("Z"), "UserPrincipalName": g["userPrincipalName"],
           "IPAddress": g["ipAddress"], "ResultType": "53003", "AppDisplayName": g["appDisplayName"],
           "Status": json.dumps({"errorCode": 53003, "failureReason": "Access has been blocked by CA policies."}),
           "LocationDetails": json.dumps(g["location"]), "DeviceDetail": json.dumps(g["deviceDetail"]),
           "ConditionalAccessStatus": "failure", "RiskLevelDuringSignIn": "high",
           "RiskEventTypes_V2": '["unlikelyTravel"]',
           "ConditionalAccessPolicies": json.dumps([{"id": "p1", "displayName": "Block risky", "result": "failure",
                                                     "enforcedGrantControls": ["Block"]},
                                                    {"id": "p2", "displayName": "Report only", "result":
                                                     "reportOnlyFailure", "enforcedGrantControls": ["Mfa"]}])}
    m = map_record(Vendor.ENTRA, row)
    assert (m.observed.outcome.value, m.observed.risk_level, m.observed.deciding_rule) == ("deny", "high", "Block risky")
    assert [(r.text, r.family) for r in m.observed.reasons] == [("unlikelyTravel", "network")]
    assert m.event.canonical()["timestamp"] == "2020-03-13T19:15:41.619583Z" and m.event.network.country == "US"
    row["Status"] = "{not json"
    with pytest.raises(VendorFieldError) as e:
        map_record(Vendor.ENTRA, row)
    assert e.value.fields == ["status"]


# ----------------------------------------------------------------------------- OCSF


def test_ocsf_versions_and_producers():
    rc = one("ocsf/ocsf_examples_aws_console_login_1.0.0-rc.2.json")  # "mfa": true (the rc name), no time_dt
    assert rc.event.auth.mfa_method.value == "push" and rc.event.resource.id == "signin.amazonaws.com"
    caption = one("ocsf/ocsf_examples_aws_console_login_1.1.0_no_status_id.json")  # only "status": "Success"
    assert caption.observed.outcome.value == "allow"
    assert caption.event.canonical()["timestamp"] == "2023-11-10T16:24:34.000000Z"
    okta = one("ocsf/ocsf_examples_okta_session_start_1.3.0.json")  # time in seconds by mistake; time_dt right
    assert okta.event.canonical()["timestamp"].startswith("2024-08-13T15:58:20")
    assert okta.event.network.asn == 394089 and okta.event.network.country == "US"
    win = one("ocsf/ocsf_examples_windows_4625.json")  # src_endpoint.ip "-", a bad password
    assert win.observed.failure and win.event.network.ip == "0.0.0.0" and "network.ip" in missing(win)
    sp = records("ocsf/ocsf_examples_aws_credential_challenge_1.5.0_comma_removed.json")[0]
    sp["status_id"] = 1  # 1.5: only actor.user, no user; with a status it maps
    m = map_record(Vendor.OCSF, sp)
    assert m.event.user.id == "test" and m.observed.event_type.startswith("3002:Other")


def test_ocsf_time_and_activity_variants():
    raw = records("ocsf/ocsf_examples_aws_console_login_1.1.0.json")[0]
    no_dt = {k: v for k, v in raw.items() if k != "time_dt"}
    no_dt["time"] = 1699633474  # seconds, no time_dt to tell
    with pytest.raises(VendorFieldError) as e:
        map_record(Vendor.OCSF, no_dt)
    assert e.value.fields == ["time"]
    for activity, type_uid in ((2, 300202), (0, 300200)):  # Logoff, Unknown: not sign-ins
        bad = {**raw, "activity_id": activity, "type_uid": type_uid}
        with pytest.raises(VendorFieldError) as e:
            map_record(Vendor.OCSF, bad)
        assert e.value.fields == ["activity_id"]
    for disp, want in ((1, "allow"), (22, "challenge"), (2, "deny")):
        assert map_record(Vendor.OCSF, {**raw, "disposition_id": disp}).observed.outcome.value == want
    assert map_record(Vendor.OCSF, {**raw, "status_id": 2}).observed.failure
