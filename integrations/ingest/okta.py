"""Okta System Log events (``/api/v1/logs``, Event Hooks) to native events plus Okta's own decision.

Read: ``uuid`` (the idempotency key), ``published``, ``eventType``, ``actor``, ``outcome.result`` and
``outcome.reason``, ``client.ipAddress``/``geographicalContext``/``userAgent``, ``securityContext``
(``asNumber``, ``isProxy``), ``device``, ``authenticationContext``, ``debugContext.debugData`` (``risk`` -- a
``{reasons=..., level=...}`` string, not JSON -- ``behaviors``, ``threatSuspected``, ``factor``) and the
``PolicyRule``/``AppInstance`` targets. Okta does not send device compliance, EDR, Tor or hosting signals.
"""

from __future__ import annotations

import json
import re
from typing import Any

from integrations.ingest.common import (
    assume_posture,
    mfa_method,
    set_country,
    set_ip,
    set_mfa,
    sign_in_activity,
    stable_id,
    user_defaults,
    utc_if_naive,
)
from integrations.ingest.families import family_of
from integrations.ingest.observed import (
    LEVELS,
    Draft,
    Mapped,
    Observed,
    Reason,
    RiskLevel,
    Src,
    Vendor,
    VendorOutcome,
    VendorPolicy,
    ident,
    raw_hash,
)

SIGN_IN_TYPES = frozenset({"user.session.start", "policy.evaluate_sign_on", "user.authentication.sso",
                           "user.authentication.auth_via_mfa", "user.authentication.verify",
                           "user.authentication.authenticate", "user.session.access_admin_app",
                           "user.authentication.auth_via_IDP", "user.mfa.okta_verify.deny_push"})
OUTCOMES = {"SUCCESS": VendorOutcome.ALLOW, "ALLOW": VendorOutcome.ALLOW, "CHALLENGE": VendorOutcome.CHALLENGE,
            "FAILURE": VendorOutcome.DENY, "DENY": VendorOutcome.DENY}
NO_DECISION = {"SKIPPED": "Okta skipped the step", "UNKNOWN": "Okta recorded no result"}
ADMIN_APP_NAMES = frozenset({"okta admin console", "saasure"})  # saasure: the admin console's app name
MAP_TEXT = re.compile(r"^\{(.*)\}$", re.S)


def parse_okta_map(text: str) -> dict[str, str]:
    """Okta's ``{key=value, key=value}`` notation (Java's Map.toString). A list value (``reasons=A, B``)
    keeps its commas: a part without ``=`` belongs to the key before it."""
    m = MAP_TEXT.match(text.strip())
    if m is None:
        raise ValueError("not Okta's {key=value, ...} notation")
    out: dict[str, str] = {}
    last: str | None = None
    for part in (p.strip() for p in m.group(1).split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if eq and key.strip():
            last = key.strip()
            out[last] = value.strip()
        elif last is not None:
            out[last] += ", " + part
        else:
            raise ValueError(f"{part!r} has no key")
    return out


def _okta_object(src: Src, path: str, value: Any) -> dict[str, Any]:
    """A debugData value Okta writes as ``{key=value, ...}`` (Java's Map.toString), as JSON text (the newer
    ``logOnlySecurityData``), or that an export already decoded into an object."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise src.fail(path, "must be a string or an object")
    text = value.strip()
    if text.startswith("{\""):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as exc:
            raise src.fail(path, f"not JSON: {exc.msg} at column {exc.colno}: {text[:80]!r}") from None
        if not isinstance(out, dict):
            raise src.fail(path, "must be a JSON object")
        return out
    try:
        return parse_okta_map(text)
    except ValueError as exc:
        raise src.fail(path, f"{exc}: {text[:80]!r}") from None


def _level(src: Src, path: str, value: Any) -> RiskLevel:
    lv = str(value).strip().lower()
    if lv not in LEVELS:
        raise src.fail(path, f"unknown risk level {value!r} (LOW, MEDIUM or HIGH)")
    return LEVELS[lv]


def _reason_texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(x).strip() for x in items if str(x).strip()]


def _risk(src: Src) -> tuple[RiskLevel | None, list[Reason]]:
    """Okta's risk level and reasons: ``debugData.risk`` and ``behaviors`` (``{key=value}`` text), else the
    same inside ``debugData.logOnlySecurityData`` (JSON, the form newer orgs log), and ``threatSuspected``."""
    level: RiskLevel | None = None
    reasons: list[Reason] = []
    debug = src.get("debugContext.debugData", dict) or {}
    sec_path = "debugContext.debugData.logOnlySecurityData"
    security = _okta_object(src, sec_path, debug["logOnlySecurityData"]) if debug.get("logOnlySecurityData") else {}
    for path, raw_risk in (("debugContext.debugData.risk", debug.get("risk")), (sec_path, security.get("risk"))):
        if raw_risk in (None, "", {}) or level is not None:
            continue
        risk = _okta_object(src, path, raw_risk)
        if risk.get("level") not in (None, ""):
            level = _level(src, path, risk["level"])
        reasons += [Reason(text=r, family=family_of(r), source=path) for r in _reason_texts(risk.get("reasons", ""))]
    seen_any = False
    for path, raw_b in (("debugContext.debugData.behaviors", debug.get("behaviors")),
                        (sec_path, security.get("behaviors"))):
        if raw_b in (None, "", {}) or seen_any:
            continue
        seen_any = True
        seen = _okta_object(src, path, raw_b)
        reasons += [Reason(text=str(k), family=family_of(str(k)), source=path)
                    for k, v in seen.items() if str(v).upper() == "POSITIVE"]
    threat = src.get("debugContext.debugData.threatSuspected", (str, bool))
    if threat is not None and str(threat).lower() == "true":
        reasons.append(Reason(text="Threat suspected", family="network", source="debugContext.debugData.threatSuspected"))
    return level, reasons


def _policies(src: Src, targets: list[Any]) -> list[VendorPolicy]:
    out = []
    for i, t in enumerate(targets):
        if not isinstance(t, dict):
            raise src.fail(f"target.{i}", "must be an object")
        if t.get("type") == "PolicyRule":
            name = t.get("displayName") or t.get("alternateId") or t.get("id") or "unnamed rule"
            ptype = (t.get("detailEntry") or {}).get("policyType") if isinstance(t.get("detailEntry"), dict) else None
            out.append(VendorPolicy(id=t.get("id"), name=str(name), result=str(ptype) if ptype else None))
    if out:
        out[0] = out[0].model_copy(update={"decided": True})
    return out


def map_okta(raw: Any) -> Mapped:
    """Map one System Log event. Raises VendorFieldError naming the Okta field."""
    if not isinstance(raw, dict):
        raise Src(Vendor.OKTA, {}).fail("(record)", "must be a JSON object (one System Log event)")
    src = Src(Vendor.OKTA, raw)
    d = Draft(src)
    uuid = src.get("uuid", str, required=True)
    etype = src.get("eventType", str, required=True)
    if etype not in SIGN_IN_TYPES and not etype.startswith("user.authentication."):
        raise src.fail("eventType", f"{etype!r} is not a sign-in event glassgate maps (one of "
                       f"{', '.join(sorted(SIGN_IN_TYPES))})")
    result = src.get("outcome.result", str, required=True)
    if result.upper() in NO_DECISION:
        raise src.fail("outcome.result", f"{result!r}: {NO_DECISION[result.upper()]}, so there is no decision to "
                       "compare (glassgate maps SUCCESS, ALLOW, CHALLENGE, FAILURE, DENY)")
    if result.upper() not in OUTCOMES:
        raise src.fail("outcome.result", f"{result!r} is not an outcome glassgate maps (SUCCESS, ALLOW, CHALLENGE, "
                       "FAILURE, DENY)")
    outcome = OUTCOMES[result.upper()]
    d.set("event_id", ident(uuid, prefix="okta:"), "uuid")
    d.set("timestamp", utc_if_naive(src.get("published", str, required=True)), "published")
    if src.get("actor.type", str) not in (None, "User"):
        raise src.fail("actor.type", "must be User: only a person's sign-in is scored")
    user = src.get("actor.alternateId", str) or src.get("actor.id", str, required=True)
    d.set("user.id", ident(user.lower()), "actor.alternateId")
    user_defaults(d, "Okta")
    d.set("user.privileged", etype == "user.session.access_admin_app", "eventType")
    session = src.get("authenticationContext.externalSessionId", str)
    d.set("session_id", ident(session) if session and session != "unknown" else f"okta-{ident(uuid)}",
          "authenticationContext.externalSessionId")
    # network
    set_ip(d, src.get("client.ipAddress", str), "client.ipAddress", "Okta")
    set_country(d, src.get("client.geographicalContext.country", str), "client.geographicalContext.country")
    lat = src.get("client.geographicalContext.geolocation.lat", float)
    lon = src.get("client.geographicalContext.geolocation.lon", float)
    if lat is not None and lon is not None:
        d.set("network.lat", lat, "client.geographicalContext.geolocation.lat")
        d.set("network.lon", lon, "client.geographicalContext.geolocation.lon")
    else:
        d.assume("network.lat", None, "client.geographicalContext.geolocation is absent")
    asn = src.get("securityContext.asNumber", int)
    if asn is None:
        d.assume("network.asn", 0, "securityContext.asNumber is absent")
    else:
        d.set("network.asn", asn, "securityContext.asNumber")
    proxy = src.get("securityContext.isProxy", bool)
    if proxy is None:
        d.assume("network.is_vpn", None, "securityContext.isProxy is absent")
    else:
        d.set("network.is_vpn", proxy, "securityContext.isProxy")
    d.assume("network.is_tor", None, "Okta does not say whether an address is a Tor exit")
    d.assume("network.is_hosting", None, "Okta does not say whether an address is a hosting provider")
    # device
    ua = src.get("client.userAgent.rawUserAgent", str)
    dev_id = src.get("device.id", str)
    d.set("device.id", ident(dev_id) if dev_id else stable_id(ua, src.get("client.device", str), prefix="ua-"),
          "device.id" if dev_id else "client.userAgent.rawUserAgent")
    if ua:
        d.set("device.user_agent", ua[:1024], "client.userAgent.rawUserAgent")
    managed = src.get("device.managed", bool)
    if managed is None:
        assume_posture(d, "device.managed", "Okta sends device.managed only for Okta Verify devices")
    else:
        d.set("device.managed", managed, "device.managed")
    assume_posture(d, "device.compliant", "Okta does not report device compliance")
    assume_posture(d, "device.edr_running", "Okta does not report EDR")
    enc = src.get("device.disk_encryption_type", str)
    if enc is not None:
        d.set("device.disk_encrypted", enc.upper() not in ("NONE", "UNKNOWN"), "device.disk_encryption_type")
    # auth
    factor = src.get("debugContext.debugData.factor", str) or src.get("authenticationContext.credentialType", str)
    method = mfa_method(factor) if factor else None
    set_mfa(d, method, "debugContext.debugData.factor", why_missing="Okta logs when MFA happens, not its age")
    # resource: the app signed in to, else Okta itself
    targets = src.get("target", list) or []
    app = next((t for t in targets if isinstance(t, dict) and t.get("type") == "AppInstance"), None)
    app_names = {str(v).strip().lower() for v in ((app or {}).get("alternateId"), (app or {}).get("displayName")) if v}
    if etype == "user.session.access_admin_app" or app_names & ADMIN_APP_NAMES:
        how = "eventType" if etype == "user.session.access_admin_app" else "target"
        d.set("resource.id", "okta-admin-console", how)
        d.set("resource.kind", "admin_console", how)
    else:
        name = next((v for v in ((app or {}).get("alternateId"), (app or {}).get("displayName"))
                     if isinstance(v, str) and v.strip() and v != "unknown"), "okta")
        d.set("resource.id", ident(name.lower()), "target")
        d.set("resource.kind", "saas", "target")
    d.assume("resource.sensitivity", "internal", "Okta does not classify applications by sensitivity")
    sign_in_activity(d)
    level, reasons = _risk(src)
    reason = src.get("outcome.reason", str)
    failure = result.upper() == "FAILURE"
    obs = Observed(vendor=Vendor.OKTA, vendor_event_id=uuid, event_type=etype, outcome=outcome, failure=failure,
                   status_detail=reason, risk_level=level, reasons=reasons, policies=_policies(src, targets),
                   missing=d.missing)
    return Mapped(event=d.build(), observed=obs, raw_hash=raw_hash(raw))
