"""Microsoft Entra sign-ins (Graph ``signIn``, v1.0 or beta, and the Azure Monitor export that wraps it in
``properties``) to native events plus Entra's own decision.

Read: ``id`` (the idempotency key), ``createdDateTime``, ``userPrincipalName``, ``status.errorCode`` (53003
blocked by Conditional Access, 50074/50076 MFA required, 50126 bad password), ``conditionalAccessStatus``,
``riskLevelDuringSignIn``, ``riskEventTypes_v2``, ``appliedConditionalAccessPolicies`` (``result``,
``enforcedGrantControls``), ``location``, ``deviceDetail`` (``isCompliant``, ``isManaged``), ``ipAddress``,
``authenticationDetails`` (beta and Azure Monitor only: v1.0 has no MFA method or age), ``autonomousSystemNumber``
(beta). Entra does not send EDR, Tor or hosting signals.
"""

from __future__ import annotations

from typing import Any

from integrations.ingest.common import (
    assume_posture,
    mfa_method,
    set_country,
    set_mfa,
    sign_in_activity,
    stable_id,
    user_defaults,
)
from integrations.ingest.families import family_of
from integrations.ingest.observed import (
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

CA_BLOCK = 53003
MFA_REQUIRED = frozenset({50074, 50076, 50079, 50072})
CREDENTIAL_FAILURES = frozenset({50126, 50053, 50055, 50056, 50034, 50144})
CA_STATUS = frozenset({"success", "failure", "notApplied", "unknownFutureValue"})
RISK_LEVELS: dict[str, RiskLevel | None] = {"none": "none", "low": "low", "medium": "medium", "high": "high",
                                            "hidden": None, "unknownFutureValue": None}
CA_RESULTS = frozenset({"success", "failure", "notApplied", "notEnabled", "unknown", "unknownFutureValue",
                        "reportOnlySuccess", "reportOnlyFailure", "reportOnlyNotApplied", "reportOnlyInterrupted"})
ADMIN_APPS = ("azure portal", "microsoft azure management", "microsoft entra admin center", "azure active directory "
              "powershell", "microsoft graph command line tools")
CLOUD_APIS = ("windows azure service management api", "azure resource manager")


def _outcome(code: int, ca: str | None) -> tuple[VendorOutcome, bool]:
    if code == CA_BLOCK or ca == "failure":
        return VendorOutcome.DENY, False
    if code in MFA_REQUIRED:
        return VendorOutcome.CHALLENGE, False
    if code != 0:
        return VendorOutcome.DENY, code in CREDENTIAL_FAILURES
    return VendorOutcome.ALLOW, False


def _policies(src: Src, outcome: VendorOutcome) -> list[VendorPolicy]:
    items = src.get("appliedConditionalAccessPolicies", list) or []
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            raise src.fail(f"appliedConditionalAccessPolicies.{i}", "must be an object")
        result = p.get("result")
        if result not in CA_RESULTS:
            raise src.fail(f"appliedConditionalAccessPolicies.{i}.result", f"{result!r} is not a Conditional Access "
                           f"result ({', '.join(sorted(CA_RESULTS))})")
        if result not in ("success", "failure"):
            continue  # not applied, not enabled or report-only: it did not decide anything
        controls = p.get("enforcedGrantControls") or []
        if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
            raise src.fail(f"appliedConditionalAccessPolicies.{i}.enforcedGrantControls", "must be a list of strings")
        out.append(VendorPolicy(id=p.get("id"), name=str(p.get("displayName") or p.get("id") or "unnamed policy"),
                                result=result, controls=controls))
    if out:
        if outcome is VendorOutcome.DENY:
            pick = next((k for k, p in enumerate(out) if p.result == "failure" or "block" in p.controls), None)
        elif outcome is VendorOutcome.CHALLENGE:
            pick = next((k for k, p in enumerate(out) if "mfa" in p.controls), None)
        else:
            pick = None
        if pick is not None:
            out[pick] = out[pick].model_copy(update={"decided": True})
    return out


def map_entra(raw: Any) -> Mapped:
    """Map one sign-in (Graph or Azure Monitor form). Raises VendorFieldError naming the Entra field."""
    if not isinstance(raw, dict):
        raise Src(Vendor.ENTRA, {}).fail("(record)", "must be a JSON object (one signIn)")
    if isinstance(raw.get("properties"), dict) and ("category" in raw or "operationName" in raw):
        src = Src(Vendor.ENTRA, raw["properties"], prefix="properties.")
    else:
        src = Src(Vendor.ENTRA, raw)
    d = Draft(src)
    sid = src.get("id", str, required=True)
    d.set("event_id", ident(sid, prefix="entra:"), "id")
    d.set("timestamp", src.get("createdDateTime", str, required=True), "createdDateTime")
    upn = src.get("userPrincipalName", str) or src.get("userId", str, required=True)
    d.set("user.id", ident(upn.lower()), "userPrincipalName")
    user_defaults(d, "Entra")
    d.assume("user.privileged", False, "Entra sign-ins do not say whether the account holds a privileged role")
    session = src.get("sessionId", str) or src.get("correlationId", str)
    d.set("session_id", ident(session) if session else f"entra-{ident(sid)}", "correlationId")
    code = src.get("status.errorCode", int, required=True)
    ca = src.get("conditionalAccessStatus", str)
    if ca is not None and ca not in CA_STATUS:
        raise src.fail("conditionalAccessStatus", f"{ca!r} is not one of {', '.join(sorted(CA_STATUS))}")
    # network
    d.set("network.ip", src.get("ipAddress", str, required=True), "ipAddress")
    set_country(d, src.get("location.countryOrRegion", str), "location.countryOrRegion")
    lat = src.get("location.geoCoordinates.latitude", float)
    lon = src.get("location.geoCoordinates.longitude", float)
    if lat is not None and lon is not None:
        d.set("network.lat", lat, "location.geoCoordinates.latitude")
        d.set("network.lon", lon, "location.geoCoordinates.longitude")
    else:
        d.assume("network.lat", None, "location.geoCoordinates is absent")
    asn = src.get("autonomousSystemNumber", int)
    if asn is None:
        d.assume("network.asn", 0, "Graph v1.0 has no autonomousSystemNumber (beta has)")
    else:
        d.set("network.asn", asn, "autonomousSystemNumber")
    d.assume("network.is_vpn", None, "Entra does not say whether an address is a VPN")
    d.assume("network.is_tor", None, "Entra reports anonymised addresses only as a risk detection")
    d.assume("network.is_hosting", None, "Entra does not say whether an address is a hosting provider")
    # device
    src.get("deviceDetail", dict)  # refused early when it is not an object
    dev_id = src.get("deviceDetail.deviceId", str)
    ua = src.get("userAgent", str)
    d.set("device.id", ident(dev_id) if dev_id else stable_id(
        src.get("deviceDetail.operatingSystem", str), src.get("deviceDetail.browser", str), ua, prefix="ua-"),
        "deviceDetail.deviceId")
    for native, field in (("device.managed", "isManaged"), ("device.compliant", "isCompliant")):
        v = src.get(f"deviceDetail.{field}", bool)
        if v is None:
            assume_posture(d, native, f"deviceDetail.{field} is absent")
        else:
            d.set(native, v, f"deviceDetail.{field}")
    assume_posture(d, "device.edr_running", "Entra does not report EDR")
    if ua:
        d.set("device.user_agent", ua[:1024], "userAgent")
    # auth: authenticationDetails exist in beta and the Azure Monitor export, not in v1.0
    details = src.get("authenticationDetails", list)
    method = None
    if details is not None:
        for i, step in enumerate(details):
            if not isinstance(step, dict):
                raise src.fail(f"authenticationDetails.{i}", "must be an object")
            name = step.get("authenticationMethod")
            if step.get("succeeded") is True and isinstance(name, str) and (m := mfa_method(name)):
                method = method or m
    set_mfa(d, method, "authenticationDetails", why_missing="Graph v1.0 sign-ins carry no MFA method or time"
            if details is None else "no second factor was performed in this sign-in")
    # resource
    app = src.get("appDisplayName", str) or src.get("resourceDisplayName", str) or src.get("appId", str) or "entra"
    low = app.lower()
    kind = "admin_console" if low in ADMIN_APPS else "cloud_api" if low in CLOUD_APIS else "saas"
    d.set("resource.id", ident(low), "appDisplayName")
    d.set("resource.kind", kind, "appDisplayName")
    d.assume("resource.sensitivity", "internal", "Entra does not classify applications by sensitivity")
    sign_in_activity(d)
    # Entra's decision
    outcome, failure = _outcome(code, ca)
    level_text = src.get("riskLevelDuringSignIn", str)
    if level_text is not None and level_text not in RISK_LEVELS:
        raise src.fail("riskLevelDuringSignIn", f"{level_text!r} is not one of none, low, medium, high, hidden")
    events = src.get("riskEventTypes_v2", list)
    field = "riskEventTypes_v2"
    if events is None:
        events, field = src.get("riskEventTypes", list) or [], "riskEventTypes"
    if not all(isinstance(e, str) for e in events):
        raise src.fail(field, "must be a list of strings")
    reasons = [Reason(text=e, family=family_of(e), source=field) for e in events]
    obs = Observed(vendor=Vendor.ENTRA, vendor_event_id=sid, event_type="signIn", outcome=outcome, failure=failure,
                   status_detail=(f"{code}: {src.get('status.failureReason', str)}" if code else None),
                   risk_level=RISK_LEVELS.get(level_text) if level_text else None, reasons=reasons,
                   policies=_policies(src, outcome), missing=d.missing)
    return Mapped(event=d.build(), observed=obs, raw_hash=raw_hash(raw))
