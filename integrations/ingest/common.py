"""What every sign-in log lacks in the same way, and the MFA names the vendors use.

A sign-in log line has no request rate, data volume or resource spread (those describe a session's work,
not its start): glassgate fills the neutral value of a single sign-in and names the fields as missing, so the
explanation says they were not observed instead of reading them as benign.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from datetime import datetime

from integrations.ingest.countries import UNKNOWN, country_code
from integrations.ingest.observed import Draft

NOT_IN_SIGNIN = "sign-in logs do not carry it"
MFA_UNKNOWN_MINUTES = 600  # MFA age is not in the log: assume a working day old (within training), never "just now"

# Vendor factor names to native MFA methods, strongest first (first match wins).
MFA_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("webauthn", re.compile(r"webauthn|fido|passkey|security key|windows hello|signed_nonce|fastpass|smart ?card|"
                            r"certificate|x509", re.I)),
    ("totp", re.compile(r"totp|otp|oath|verification code|authenticator code|google", re.I)),
    ("push", re.compile(r"push|notification|okta_verify|okta verify|number match", re.I)),
    ("sms", re.compile(r"sms|text message|voice|phone|call|email", re.I)),
)


def mfa_method(name: str) -> str | None:
    """The native MFA method a vendor's factor name stands for; None when it is not a second factor."""
    return next((m for m, rx in MFA_WORDS if rx.search(name)), None)


def stable_id(*parts: str | None, prefix: str) -> str:
    """A deterministic id from what the vendor does give (e.g. a device id from its user agent)."""
    key = "|".join(p or "" for p in parts)
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:16]


def set_country(d: Draft, value: str | None, source: str) -> None:
    code = country_code(value) if value else None
    if code is None:
        d.assume("network.country", UNKNOWN, f"{d.src.path(source)} is absent or not a country glassgate knows"
                 + (f" ({value!r})" if value else ""))
    else:
        d.set("network.country", code, source)


def sign_in_activity(d: Draft) -> None:
    d.set("activity.action", "login", None)
    d.assume("activity.requests_per_min", 1, NOT_IN_SIGNIN)
    d.assume("activity.bytes_out", 0, NOT_IN_SIGNIN)
    d.assume("activity.distinct_resources_1h", 1, NOT_IN_SIGNIN)


def set_mfa(d: Draft, method: str | None, source: str | None, *, why_missing: str) -> None:
    """MFA performed in this very sign-in is 0 minutes old; otherwise its method and age are unknown."""
    if method and method != "none":
        d.set("auth.mfa_method", method, source)
        d.set("auth.minutes_since_mfa", 0, source)
    else:
        d.set("auth.mfa_method", "none", source)
        d.assume("auth.minutes_since_mfa", MFA_UNKNOWN_MINUTES, why_missing)
    d.set("auth.failed_attempts_1h", 0, None)  # derived from stored history by the ingest service


def assume_posture(d: Draft, native: str, why: str) -> None:
    """A posture control the vendor does not observe. Assumed present, and named: neither the vendor nor
    glassgate saw it, so it must not tip the comparison of their decisions either way (assuming it absent
    would make every sign-in look like an unmanaged device)."""
    d.assume(native, True, why + "; assumed present so that posture nobody observed does not count")


def user_defaults(d: Draft, vendor_name: str) -> None:
    d.assume("user.roles", [], f"{vendor_name} sign-in logs do not list the user's roles")


def utc_if_naive(text: str) -> str:
    """A vendor timestamp as RFC 3339. Okta's ``published`` and Entra's ``createdDateTime`` are documented as
    UTC; SIEM exports of them (Panther, Log Analytics) drop the zone (``2024-08-15 15:05:09.154000000``), so
    a timestamp without a zone is read as UTC. Anything unparseable is passed on to be refused by name."""
    s = text.strip()
    try:
        ts = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return text
    return s + "+00:00" if ts.tzinfo is None else s


NO_ADDRESS = frozenset({"", "-", "unknown", "null", "none", "n/a"})
UNKNOWN_IP = "0.0.0.0"  # noqa: S104 - the unspecified address stands for "not observed"; it is named as missing


def set_ip(d: Draft, value: str | None, source: str, vendor_name: str) -> None:
    """The client address: validated as IPv4 or IPv6 (an IPv6 zone is dropped). A record without one (a
    Windows logon writes ``-``, a GitHub SSO event has none) keeps the unspecified address, named missing;
    a value that is no address at all (``555.555.55.5``) is refused naming the vendor field."""
    if value is None or value.strip().lower() in NO_ADDRESS:
        d.assume("network.ip", UNKNOWN_IP, f"{vendor_name} did not send the client address ({d.src.path(source)})")
        return
    text = value.strip().strip("[]")
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        raise d.src.fail(source, f"{value[:60]!r} is not an IPv4 or IPv6 address") from None
    d.set("network.ip", str(addr), source)
