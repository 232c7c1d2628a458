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

import contextlib
import json
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
# Interrupts: Entra stopped the sign-in to ask the person for something before it issues a token (stay signed
# in, pick an account, consent, register or reset a factor, sign in again). Not a denial and not a bad
# credential: Entra stood in the way pending the person's answer, which is a challenge.
INTERRUPTS = frozenset({50140, 50199, 50058, 50125, 50097, 50072, 16000, 16001, 16003, 65001, 50132, 50133,
                        53000, 530032, 81010, 81012})
# Sign-ins that are not a person's: Azure Monitor categories, Log Analytics tables and signInEventTypes.
NOT_A_PERSON = frozenset({"serviceprincipalsigninlogs", "managedidentitysigninlogs",
                          "microsoftserviceprincipalsigninlogs", "aadserviceprincipalsigninlogs",
                          "aadmanagedidentitysigninlogs", "serviceprincipal", "managedidentity"})
# Log Analytics (SigninLogs / AADNonInteractiveUserSignInLogs) columns to their Graph names; the dynamic
# columns arrive as JSON text in an export.
LOG_ANALYTICS = {"Id": "id", "CreatedDateTime": "createdDateTime", "UserPrincipalName": "userPrincipalName",
                 "UserId": "userId", "IPAddress": "ipAddress", "Status": "status", "ResultType": "resultType",
                 "LocationDetails": "location", "DeviceDetail": "deviceDetail", "CorrelationId": "correlationId",
                 "ConditionalAccessStatus": "conditionalAccessStatus",
                 "ConditionalAccessPolicies": "appliedConditionalAccessPolicies",
                 "RiskLevelDuringSignIn": "riskLevelDuringSignIn", "RiskEventTypes_V2": "riskEventTypes_v2",
                 "RiskEventTypes": "riskEventTypes", "AuthenticationDetails": "authenticationDetails",
                 "AppDisplayName": "appDisplayName", "ResourceDisplayName": "resourceDisplayName", "AppId": "appId",
                 "UserAgent": "userAgent", "SessionId": "sessionId", "AutonomousSystemNumber": "autonomousSystemNumber",
                 "MfaDetail": "mfaDetail", "IsInteractive": "isInteractive", "UserType": "userType"}
JSON_TEXT_FIELDS = ("status", "location", "deviceDetail", "appliedConditionalAccessPolicies", "conditionalAccessPolicies",
                    "authenticationDetails", "riskEventTypes_v2", "riskEventTypes", "mfaDetail", "signInEventTypes")


def _outcome(code: int, ca: str | None) -> tuple[VendorOutcome, bool]:
    if code == CA_BLOCK or ca == "failure":
        return VendorOutcome.DENY, False
    if code in MFA_REQUIRED or code in INTERRUPTS:
        return VendorOutcome.CHALLENGE, False
    if code != 0:
        return VendorOutcome.DENY, code in CREDENTIAL_FAILURES
    return VendorOutcome.ALLOW, False


def _policies(src: Src, outcome: VendorOutcome) -> list[VendorPolicy]:
    items = src.get("appliedConditionalAccessPolicies", list)
    field = "appliedConditionalAccessPolicies"
    if items is None:  # the 2018 beta name, with enforcedAccessControls
        items, field = src.get("conditionalAccessPolicies", list) or [], "conditionalAccessPolicies"
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            raise src.fail(f"{field}.{i}", "must be an object")
        result = p.get("result")
        if result not in CA_RESULTS:
            raise src.fail(f"{field}.{i}.result", f"{result!r} is not a Conditional Access "
                           f"result ({', '.join(sorted(CA_RESULTS))})")
        if result not in ("success", "failure"):
            continue  # not applied, not enabled or report-only: it did not decide anything
        ckey = "enforcedGrantControls" if "enforcedGrantControls" in p else "enforcedAccessControls"
        controls = p.get(ckey) or []
        if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
            raise src.fail(f"{field}.{i}.{ckey}", "must be a list of strings")
        out.append(VendorPolicy(id=p.get("id"), name=str(p.get("displayName") or p.get("id") or "unnamed policy"),
                                result=result, controls=[c.lower() if c in ("MFA", "Block") else c
                                                         for c in controls]))
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


def _decoded(record: dict[str, Any]) -> dict[str, Any]:
    """Object-valued fields an export wrote as JSON text (Log Analytics dynamic columns, some forwarders)
    decoded; text that is not JSON stays, to be refused naming its field."""
    out = dict(record)
    for key in JSON_TEXT_FIELDS:
        v = out.get(key)
        if isinstance(v, str) and v.strip()[:1] in ("{", "["):
            with contextlib.suppress(json.JSONDecodeError):
                out[key] = json.loads(v)
    return out


def _source(raw: dict[str, Any]) -> tuple[Src, str | None]:
    """The signIn inside its wrapper, and the Azure Monitor category or Log Analytics table it came from."""
    if isinstance(raw.get("properties"), dict) and ("category" in raw or "operationName" in raw):
        return Src(Vendor.ENTRA, _decoded(raw["properties"]), prefix="properties."), str(raw.get("category") or "")
    if isinstance(raw.get("properties"), str) and ("category" in raw or "operationName" in raw):
        try:
            props = json.loads(raw["properties"])
        except json.JSONDecodeError:
            raise Src(Vendor.ENTRA, raw).fail("properties", "is text that is not a JSON object") from None
        if isinstance(props, dict):
            return Src(Vendor.ENTRA, _decoded(props), prefix="properties."), str(raw.get("category") or "")
    if "CreatedDateTime" in raw or "UserPrincipalName" in raw or raw.get("Type") in ("SigninLogs",
                                                                                     "AADNonInteractiveUserSignInLogs"):
        row = {LOG_ANALYTICS.get(k, k[:1].lower() + k[1:]): v for k, v in raw.items()}
        return Src(Vendor.ENTRA, _decoded(row)), str(raw.get("Type") or "")
    return Src(Vendor.ENTRA, _decoded(raw)), None


def _error_code(src: Src) -> int:
    """``status.errorCode`` (an integer; exports write it as text, ``"50126"``), else Azure Monitor's and Log
    Analytics' ``resultType``."""
    if isinstance(src.get("status", (dict, str)), str):
        raise src.fail("status", "is text that is not a JSON object (an export's dynamic column cut short?)")
    field = "status.errorCode"
    code = src.get(field, (int, str))
    if code is None:
        field, code = "resultType", src.get("resultType", (int, str))
    if code is None:
        raise src.fail("status.errorCode", "required field is missing")
    if isinstance(code, str):
        if not code.strip().isdigit():
            raise src.fail(field, f"{code[:40]!r} is not an Entra error code (a number, 0 for success)")
        code = int(code)
    return code


def map_entra(raw: Any) -> Mapped:
    """Map one sign-in (Graph, Azure Monitor or Log Analytics form). Raises VendorFieldError naming the Entra
    field."""
    if not isinstance(raw, dict):
        raise Src(Vendor.ENTRA, {}).fail("(record)", "must be a JSON object (one signIn)")
    src, category = _source(raw)
    if category and category.lower() in NOT_A_PERSON:
        raise Src(Vendor.ENTRA, raw).fail("category" if "category" in raw else "Type", f"{category!r} is a "
                                          "service principal or managed identity sign-in: only a person's sign-in "
                                          "is scored")
    kinds = src.get("signInEventTypes", list) or []
    if kinds and all(str(k).lower() in NOT_A_PERSON for k in kinds):
        raise src.fail("signInEventTypes", f"{kinds} is not a person's sign-in: only a person's sign-in is scored")
    d = Draft(src)
    sid = src.get("id", str, required=True)
    d.set("event_id", ident(sid, prefix="entra:"), "id")
    d.set("timestamp", utc_if_naive(src.get("createdDateTime", str, required=True)), "createdDateTime")
    upn = src.get("userPrincipalName", str) or src.get("userId", str, required=True)
    d.set("user.id", ident(upn.lower()), "userPrincipalName")
    user_defaults(d, "Entra")
    d.assume("user.privileged", False, "Entra sign-ins do not say whether the account holds a privileged role")
    session = src.get("sessionId", str) or src.get("correlationId", str)
    d.set("session_id", ident(session) if session else f"entra-{ident(sid)}", "correlationId")
    code = _error_code(src)
    ca = src.get("conditionalAccessStatus", str)
    if ca is not None and ca not in CA_STATUS:
        raise src.fail("conditionalAccessStatus", f"{ca!r} is not one of {', '.join(sorted(CA_STATUS))}")
    # network
    set_ip(d, src.get("ipAddress", str), "ipAddress", "Entra")
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
    mfa_field = "authenticationDetails"
    legacy = src.get("mfaDetail.authMethod", str) or src.get("mfaDetail.mfaAuthMethod", str)  # older beta
    if method is None and legacy and (m := mfa_method(legacy)):
        method, mfa_field = m, "mfaDetail"
    set_mfa(d, method, mfa_field, why_missing="Graph v1.0 sign-ins carry no MFA method or time"
            if details is None and not legacy else "no second factor was performed in this sign-in")
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
    level_field = "riskLevelDuringSignIn" if src.get("riskLevelDuringSignIn", str) is not None else "riskLevel"
    level_text = src.get(level_field, str)  # riskLevel: the 2018 beta name
    if level_text is not None and level_text not in RISK_LEVELS:
        raise src.fail(level_field, f"{level_text!r} is not one of none, low, medium, high, hidden")
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
