"""The event contract: strict, precise rejection; canonical form."""

from __future__ import annotations

import copy

import pytest

from risk.events import EventValidationError, parse_event

GOOD = {
    "event_id": "evt-001", "timestamp": "2026-11-29T10:32:00Z", "session_id": "s-123",
    "user": {"id": "alice", "roles": ["finance-admin"], "privileged": True},
    "device": {"id": "lt-4411", "managed": True, "compliant": True, "edr_running": True, "disk_encrypted": True,
               "os_patch_age_days": 12, "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},
    "network": {"ip": "203.0.113.7", "country": "DE", "asn": 3320, "lat": 52.52, "lon": 13.40,
                "is_vpn": False, "is_tor": False, "is_hosting": False},
    "auth": {"mfa_method": "webauthn", "minutes_since_mfa": 5, "failed_attempts_1h": 0},
    "resource": {"id": "payroll-db", "kind": "database", "sensitivity": "restricted"},
    "activity": {"action": "read", "requests_per_min": 12, "bytes_out": 10400, "distinct_resources_1h": 3},
}


def mutate(path: str, value=..., drop: bool = False) -> dict:
    ev = copy.deepcopy(GOOD)
    *parents, leaf = path.split(".")
    node = ev
    for p in parents:
        node = node[p]
    if drop:
        node.pop(leaf)
    else:
        node[leaf] = value
    return ev


def test_design_card_event_is_valid():
    ev = parse_event(GOOD)
    assert ev.user.id == "alice" and ev.resource.sensitivity == "restricted"
    assert ev.canonical()["timestamp"] == "2026-11-29T10:32:00.000000Z"


def test_optional_fields_may_be_missing():
    ev = copy.deepcopy(GOOD)
    for k in ("disk_encrypted", "os_patch_age_days", "user_agent"):
        ev["device"].pop(k)
    for k in ("lat", "lon", "is_vpn", "is_tor", "is_hosting"):
        ev["network"].pop(k)
    parsed = parse_event(ev)
    assert parsed.network.lat is None and parsed.device.disk_encrypted is None


@pytest.mark.parametrize(("event", "field"), [
    (mutate("surprise", 1), "surprise"),
    (mutate("device.jailbroken", True), "device.jailbroken"),
    (mutate("device.managed", "yes"), "device.managed"),
    (mutate("auth.failed_attempts_1h", -1), "auth.failed_attempts_1h"),
    (mutate("activity.bytes_out", -5), "activity.bytes_out"),
    (mutate("auth.minutes_since_mfa", 1.5), "auth.minutes_since_mfa"),
    (mutate("auth.mfa_method", "carrier-pigeon"), "auth.mfa_method"),
    (mutate("resource.kind", "mainframe"), "resource.kind"),
    (mutate("resource.sensitivity", "secret"), "resource.sensitivity"),
    (mutate("network.lon", None, drop=True), "network.lon"),
    (mutate("network.lat", 123.0), "network.lat"),
    (mutate("network.country", "Germany"), "network.country"),
    (mutate("timestamp", "2026-11-29T10:32:00"), "timestamp"),
    (mutate("timestamp", 1764412320), "timestamp"),
    (mutate("event_id", ""), "event_id"),
    (mutate("user", None, drop=True), "user"),
    (mutate("device.os_patch_age_days", True), "device.os_patch_age_days"),
])
def test_each_bad_field_is_named(event, field):
    with pytest.raises(EventValidationError) as exc:
        parse_event(event)
    assert exc.value.fields == [field], exc.value.errors


def test_every_bad_field_is_reported_at_once():
    ev = mutate("surprise", 1)
    ev["network"].pop("lon")
    ev["auth"]["failed_attempts_1h"] = -3
    ev["timestamp"] = "2026-11-29 10:32"
    with pytest.raises(EventValidationError) as exc:
        parse_event(ev)
    assert set(exc.value.fields) == {"surprise", "network.lon", "auth.failed_attempts_1h", "timestamp"}


def test_not_an_object():
    with pytest.raises(EventValidationError) as exc:
        parse_event(["evt"])
    assert exc.value.fields == ["(event)"]


def test_offsets_normalise_to_utc_and_hash_is_stable():
    a = parse_event(GOOD)
    b = parse_event(mutate("timestamp", "2026-11-29T11:32:00+01:00"))
    assert a.canonical() == b.canonical() and a.content_hash() == b.content_hash()
    c = parse_event(mutate("activity.bytes_out", 10401))
    assert c.content_hash() != a.content_hash()


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z",
                                "2301-01-01T00:00:00Z"])
def test_timestamps_out_of_range_are_a_field_error_not_a_crash(ts):
    with pytest.raises(EventValidationError) as exc:
        parse_event(mutate("timestamp", ts))
    assert [e.field for e in exc.value.errors] == ["timestamp"]
    assert "out of range" in exc.value.errors[0].message
