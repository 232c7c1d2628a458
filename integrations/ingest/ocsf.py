"""OCSF 1.x Authentication events (class 3002) with the security_control profile, to native events plus the
source's own decision.

Read: ``metadata.uid`` (the idempotency key), ``time`` (epoch milliseconds) or ``time_dt``, ``activity_id``,
``action_id``/``disposition_id`` (the decision), ``status_id``, ``risk_level_id``, ``risk_details``, ``policy``,
``user``, ``src_endpoint`` (``ip``, ``location``, ``autonomous_system``), ``device`` (``uid``, ``is_managed``,
``is_compliant``), ``is_mfa`` and ``auth_factors``, ``service``, ``http_request.user_agent``, ``session.uid``.
The input is checked against the 3002 schema first (:mod:`integrations.ingest.ocsf_schema`).
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    VendorFieldError,
    VendorFieldProblem,
    VendorOutcome,
    VendorPolicy,
    ident,
    raw_hash,
)
from integrations.ingest.ocsf_schema import schema_problems

AUTHENTICATION = 3002
SIGN_IN_ACTIVITIES = {1: "Logon", 3: "Authentication Ticket", 4: "Service Ticket Request", 99: "Other"}
DISPOSITION = {1: VendorOutcome.ALLOW, 8: VendorOutcome.ALLOW, 14: VendorOutcome.ALLOW, 15: VendorOutcome.ALLOW,
               16: VendorOutcome.ALLOW, 17: VendorOutcome.ALLOW, 19: VendorOutcome.ALLOW, 20: VendorOutcome.ALLOW,
               22: VendorOutcome.CHALLENGE, 23: VendorOutcome.CHALLENGE,
               2: VendorOutcome.DENY, 3: VendorOutcome.DENY, 4: VendorOutcome.DENY, 6: VendorOutcome.DENY,
               24: VendorOutcome.DENY, 25: VendorOutcome.DENY, 26: VendorOutcome.DENY}
ACTION = {1: VendorOutcome.ALLOW, 2: VendorOutcome.DENY}
STATUS_CAPTION = {"success": VendorOutcome.ALLOW, "failure": VendorOutcome.DENY}
EPOCH_MS_FLOOR = 100_000_000_000  # 1973-03-03 in epoch ms; a smaller ``time`` is epoch seconds written by mistake
RISK_LEVEL: dict[int, RiskLevel] = {0: "none", 1: "low", 2: "medium", 3: "high", 4: "critical"}


def _outcome(src: Src) -> tuple[VendorOutcome, str]:
    disp = src.get("disposition_id", int)
    if disp is not None and disp in DISPOSITION:
        return DISPOSITION[disp], "disposition_id"
    action = src.get("action_id", int)
    if action is not None and action in ACTION:
        return ACTION[action], "action_id"
    status = src.get("status_id", int)
    if status in (1, 2):
        return (VendorOutcome.ALLOW if status == 1 else VendorOutcome.DENY), "status_id"
    caption = src.get("status", str)  # some 1.x producers send only the caption
    if status is None and caption is not None and caption.strip().lower() in STATUS_CAPTION:
        return STATUS_CAPTION[caption.strip().lower()], "status"
    raise src.fail("action_id", "no decision: action_id is not 1 (Allowed) or 2 (Denied), disposition_id is not a "
                   "known disposition and status_id is not 1 (Success) or 2 (Failure)")


def _timestamp(src: Src) -> tuple[str, str]:
    """``time`` in epoch milliseconds. A ``time`` below 1973 in milliseconds is epoch seconds written by
    mistake (the OCSF project's own Okta example does it): ``time_dt`` is read instead when present, else the
    record is refused naming ``time``."""
    ms = src.get("time", int)
    if ms is not None and 0 <= ms < EPOCH_MS_FLOOR:
        if src.get("time_dt", str) is not None:
            return src.get("time_dt", str), "time_dt"
        raise src.fail("time", f"{ms} is before 1973 in epoch milliseconds (OCSF time): it looks like epoch "
                       "seconds; send milliseconds or time_dt")
    if ms is not None:
        try:
            return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "time"
        except (OverflowError, OSError, ValueError):
            raise src.fail("time", f"{ms} is not a time in epoch milliseconds") from None
    return src.get("time_dt", str, required=True), "time_dt"


def map_ocsf(raw: Any) -> Mapped:
    """Map one OCSF Authentication event. Raises VendorFieldError naming the OCSF attribute."""
    if not isinstance(raw, dict):
        raise Src(Vendor.OCSF, {}).fail("(record)", "must be a JSON object (one OCSF event)")
    problems = schema_problems(raw)
    if problems:
        raise VendorFieldError(Vendor.OCSF, [VendorFieldProblem(field=f, message=m) for f, m in problems])
    src = Src(Vendor.OCSF, raw)
    d = Draft(src)
    activity = src.get("activity_id", int, required=True)
    if activity not in SIGN_IN_ACTIVITIES:
        raise src.fail("activity_id", f"{activity} is not a sign-in (1 Logon, 3 or 4 ticket requests, 99 Other)")
    uid = src.get("metadata.uid", str, required=True)
    d.set("event_id", ident(uid, prefix="ocsf:"), "metadata.uid")
    ts, ts_field = _timestamp(src)
    d.set("timestamp", ts, ts_field)
    who = "user" if isinstance(raw.get("user"), dict) else "actor.user"  # 1.5 producers may send only actor.user
    user = (src.get(f"{who}.email_addr", str) or src.get(f"{who}.name", str) or src.get(f"{who}.uid", str)
            or src.get(f"{who}.uid_alt", str))
    if not user:
        raise src.fail("user", "required: no user (or actor.user) with an email_addr, name or uid")
    d.set("user.id", ident(user.lower()), f"{who}.name")
    user_defaults(d, "OCSF Authentication")
    d.assume("user.privileged", False, "OCSF Authentication has no privilege attribute")
    session = src.get("session.uid", str)
    d.set("session_id", ident(session) if session else f"ocsf-{ident(uid)}", "session.uid")
    set_ip(d, src.get("src_endpoint.ip", str), "src_endpoint.ip", "the OCSF source")
    set_country(d, src.get("src_endpoint.location.country", str), "src_endpoint.location.country")
    lat = src.get("src_endpoint.location.lat", float)
    lon = src.get("src_endpoint.location.long", float)
    if lat is not None and lon is not None:
        d.set("network.lat", lat, "src_endpoint.location.lat")
        d.set("network.lon", lon, "src_endpoint.location.long")
    else:
        d.assume("network.lat", None, "src_endpoint.location lat/long are absent")
    asn = src.get("src_endpoint.autonomous_system.number", int)
    if asn is None:
        d.assume("network.asn", 0, "src_endpoint.autonomous_system.number is absent")
    else:
        d.set("network.asn", asn, "src_endpoint.autonomous_system.number")
    d.assume("network.is_vpn", None, "OCSF Authentication has no VPN attribute")
    d.assume("network.is_tor", None, "OCSF Authentication has no Tor attribute")
    d.assume("network.is_hosting", None, "OCSF Authentication has no hosting attribute")
    ua = src.get("http_request.user_agent", str)
    dev = src.get("device.uid", str)
    d.set("device.id", ident(dev) if dev else stable_id(ua, src.get("device.name", str), prefix="ua-"), "device.uid")
    if ua:
        d.set("device.user_agent", ua[:1024], "http_request.user_agent")
    for native, attr in (("device.managed", "is_managed"), ("device.compliant", "is_compliant")):
        v = src.get(f"device.{attr}", bool)
        if v is None:
            assume_posture(d, native, f"device.{attr} is absent")
        else:
            d.set(native, v, f"device.{attr}")
    assume_posture(d, "device.edr_running", "OCSF Authentication has no EDR attribute")
    method = None
    for i, f in enumerate(src.get("auth_factors", list) or []):
        name = f.get("factor_type") if isinstance(f, dict) else None
        if not isinstance(name, str):
            raise src.fail(f"auth_factors.{i}.factor_type", "must be a string")
        method = method or mfa_method(name)
    if method is None and (src.get("is_mfa", bool) or src.get("mfa", bool)):  # mfa: the 1.0.0-rc name
        method = "push"  # MFA happened, its factor is not named: the middle strength, neither best nor worst
    set_mfa(d, method, "is_mfa", why_missing="OCSF Authentication carries no MFA age")
    service_field = next((f for f in ("service.name", "api.service.name", "dst_endpoint.hostname",
                                      "metadata.product.name", "dst_endpoint.svc_name") if src.get(f, str)), None)
    service = src.get(service_field, str) if service_field else "unknown-service"
    d.set("resource.id", ident(service.lower().split("?", 1)[0]), service_field or "service.name")
    d.set("resource.kind", "saas", "service.name")
    d.assume("resource.sensitivity", "internal", "OCSF Authentication does not classify the service")
    sign_in_activity(d)
    outcome, _ = _outcome(src)
    status = src.get("status_id", int)
    level_id = src.get("risk_level_id", int)
    if level_id is not None and level_id not in RISK_LEVEL:
        raise src.fail("risk_level_id", f"{level_id} is not 0 (Info) to 4 (Critical)")
    details = src.get("risk_details", str)
    reasons = [Reason(text=t.strip(), family=family_of(t), source="risk_details")
               for t in (details or "").split(";") if t.strip()]
    policies = []
    name = src.get("policy.name", str)
    if name or src.get("policy.uid", str):
        policies.append(VendorPolicy(id=src.get("policy.uid", str), name=name or str(src.get("policy.uid", str)),
                                     result=src.get("policy.desc", str), decided=True))
    product = src.get("metadata.product.name", str)
    obs = Observed(vendor=Vendor.OCSF, vendor_event_id=uid, event_type=f"3002:{SIGN_IN_ACTIVITIES[activity]}"
                   + (f" ({product})" if product else ""), outcome=outcome,
                   failure=status == 2 and outcome is VendorOutcome.DENY and src.get("disposition_id", int) is None,
                   status_detail=src.get("status_detail", str), risk_level=RISK_LEVEL.get(level_id)
                   if level_id is not None else None, reasons=reasons, policies=policies, missing=d.missing)
    return Mapped(event=d.build(), observed=obs, raw_hash=raw_hash(raw))
