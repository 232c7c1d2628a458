"""Inbound ticket webhooks: who signed the delivery, and what ticket it carries.

Two signature schemes are accepted. Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed by the base64 part of a
``whsec_`` secret; 5 minutes of clock skew either way; several signatures and several secrets, for
rotation) and Jira's ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>``. Two payload forms are
accepted: glassgate's generic ``{"ticket": {...}}`` (strict: unknown fields are refused) and Jira Cloud's
``jira:issue_created`` (lenient on Jira's many extra fields, strict on the ones read here).

Everything here is pure: headers, body, secrets and the current time are handed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError

TOLERANCE_S = 5 * 60
MAX_DELIVERY_ID = 200
TICKET_ID = r"^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,199}$"


class SignatureScheme(StrEnum):
    """How a delivery was signed; also its channel in ``inbound_deliveries``."""

    STANDARD = "webhook"
    JIRA = "jira"


class TicketSource(StrEnum):
    GENERIC = "generic"
    JIRA = "jira"
    SERVICENOW = "servicenow"  # {"servicenow": {...}}, Standard Webhooks signed (integrations/servicenow.py)


class Unauthenticated(Exception):
    """The delivery is not signed by a configured secret (or its channel has none); ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class PayloadError(Exception):
    """The payload is not a ticket this endpoint handles; ``problems`` names each bad field."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))


# ----------------------------------------------------------------------------- signatures


def whsec_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret. Raises ValueError when it is not base64."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a whsec_ secret must carry base64 after the prefix") from None


def sign_standard(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,`` signature of a Standard Webhooks delivery (what a sender puts in ``webhook-signature``)."""
    mac = hmac.new(whsec_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify_standard(headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str], now_s: float,
                    tolerance_s: int = TOLERANCE_S) -> str:
    """Check a Standard Webhooks delivery against every configured secret; return its ``webhook-id``.

    Raises:
        Unauthenticated: no secret configured, a header missing or malformed, the timestamp outside the
            tolerance, or no ``v1`` signature matching any secret.
    """
    if not secrets:
        raise Unauthenticated("Standard Webhooks deliveries are refused: no secret is configured "
                              "(GLASSGATE_WEBHOOK_SECRETS)")
    h = {k.lower(): v for k, v in headers.items()}
    missing = [n for n in ("webhook-id", "webhook-timestamp", "webhook-signature") if not h.get(n)]
    if missing:
        raise Unauthenticated(f"missing signature header(s): {', '.join(missing)}")
    msg_id, ts_raw, sig_header = h["webhook-id"], h["webhook-timestamp"].strip(), h["webhook-signature"]
    if not ts_raw.isascii() or not ts_raw.isdigit():
        raise Unauthenticated("webhook-timestamp must be whole seconds since the Unix epoch")
    if len(ts_raw) > 12:  # bounded before any arithmetic: a 5,000-digit number must not reach int()
        raise Unauthenticated("webhook-timestamp is not a plausible Unix time (more than 12 digits)")
    ts = int(ts_raw)
    if ts < now_s - tolerance_s:
        raise Unauthenticated(f"webhook-timestamp is more than {tolerance_s} s in the past; the delivery is stale")
    if ts > now_s + tolerance_s:
        raise Unauthenticated(f"webhook-timestamp is more than {tolerance_s} s in the future")
    offered: list[bytes] = []
    for item in sig_header.split():
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise Unauthenticated("webhook-signature carries no v1 signature")
    signed = f"{msg_id}.{ts_raw}.".encode() + body
    matched = False
    for secret in secrets:
        expected = hmac.new(whsec_key(secret), signed, hashlib.sha256).digest()
        for sig in offered:  # no early exit: the time taken does not say which one matched
            matched |= hmac.compare_digest(expected, sig)
    if not matched:
        raise Unauthenticated("no webhook-signature matches a configured secret")
    if len(msg_id) > MAX_DELIVERY_ID:
        raise Unauthenticated(f"webhook-id is longer than {MAX_DELIVERY_ID} characters")
    return msg_id


def sign_jira(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value Jira sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_jira(headers: Mapping[str, str], body: bytes, *, secret: str | None) -> str:
    """Check Jira's ``X-Hub-Signature``; return the delivery id: ``sha256:<hex of the body>``. The
    ``X-Atlassian-Webhook-Identifier`` header is not covered by the signature, so anyone replaying a signed
    body can change it: it is never the delivery's identity (the signed body, its issue key and event time
    are; see ``integrations.services.tickets``).

    Raises:
        Unauthenticated: no Jira secret configured, the header missing or malformed, or a wrong HMAC.
    """
    if not secret:
        raise Unauthenticated("Jira deliveries are refused: no secret is configured (GLASSGATE_JIRA_WEBHOOK_SECRET)")
    h = {k.lower(): v for k, v in headers.items()}
    sig = h.get("x-hub-signature", "").strip()
    if not sig:
        raise Unauthenticated("missing signature header: X-Hub-Signature")
    method, _, hexdigest = sig.partition("=")
    if method.lower() != "sha256" or not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigest):
        raise Unauthenticated("X-Hub-Signature must be 'sha256=<64 hex digits>'")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, bytes.fromhex(hexdigest)):
        raise Unauthenticated("X-Hub-Signature does not match the configured Jira secret")
    return "sha256:" + hashlib.sha256(body).hexdigest()


def scheme_of(headers: Mapping[str, str]) -> SignatureScheme | None:
    """Which scheme a delivery claims by its headers (None: unsigned)."""
    names = {k.lower() for k in headers}
    if names & {"webhook-id", "webhook-timestamp", "webhook-signature"}:
        return SignatureScheme.STANDARD
    if "x-hub-signature" in names:
        return SignatureScheme.JIRA
    return None


# ----------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Ticket:
    """A ticket as the enrichment job sees it. Its text is data: searched for identifiers, never obeyed."""

    id: str
    source: TicketSource
    title: str
    description: str
    reporter: str | None
    fields: dict[str, Any] = field(default_factory=dict)  # user_id, decision_id, event_id, occurred_at (ISO)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source.value, "title": self.title, "description": self.description,
                "reporter": self.reporter, "fields": self.fields}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Ticket:
        return cls(id=d["id"], source=TicketSource(d["source"]), title=d["title"], description=d["description"],
                   reporter=d.get("reporter"), fields=dict(d.get("fields") or {}))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _iso_text(v: Any) -> Any:
    """An instant must be ISO 8601 text with an offset: never a bare number read as Unix time."""
    if not isinstance(v, str):
        raise ValueError("must be an ISO 8601 string with a time zone offset")
    return v


class GenericFields(_Strict):
    user_id: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    decision_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    event_id: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    occurred_at: Annotated[AwareDatetime, BeforeValidator(_iso_text)] | None = None


class GenericTicket(_Strict):
    id: Annotated[StrictStr, Field(pattern=TICKET_ID)]
    title: Annotated[StrictStr, Field(max_length=500)]
    description: Annotated[StrictStr, Field(max_length=20_000)] = ""
    reporter: Annotated[StrictStr, Field(max_length=200)] | None = None
    fields: GenericFields = GenericFields()


class GenericDelivery(_Strict):
    ticket: GenericTicket


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class JiraUser(_Lenient):
    accountId: StrictStr | None = None  # noqa: N815 - Jira's names
    displayName: StrictStr | None = None  # noqa: N815
    emailAddress: StrictStr | None = None  # noqa: N815


class JiraIssueFields(_Lenient):
    summary: Annotated[StrictStr, Field(max_length=500)]
    description: Annotated[StrictStr, Field(max_length=20_000)] | dict[str, Any] | None = None
    reporter: JiraUser | None = None


class JiraIssue(_Lenient):
    key: Annotated[StrictStr, Field(pattern=r"^[A-Z][A-Z0-9_]*-[0-9]+$")]
    fields: JiraIssueFields


class JiraDelivery(_Lenient):
    webhookEvent: StrictStr  # noqa: N815
    issue: JiraIssue


def _problems(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-"))]
        # a union's branch names ("str", "dict[str,any]") are not fields
        loc = [p for p in loc if not re.fullmatch(r"(constrained-)?(str|dict\[.*\]|none)", p)]
        msg = "unknown field" if err.get("type") == "extra_forbidden" else str(err.get("msg", "invalid"))
        out.append({"field": prefix + ".".join(loc) if loc else prefix.rstrip(".") or "(body)", "message": msg})
    # one entry per field: a union reports each branch's failure
    seen: dict[str, dict[str, str]] = {}
    for p in out:
        seen.setdefault(p["field"], p)
    return list(seen.values())


def adf_text(node: Any, *, limit: int = 20_000) -> str:
    """The plain text of an Atlassian Document Format node (Jira Cloud descriptions), paragraphs on lines."""
    parts: list[str] = []

    def walk(n: Any) -> None:
        if sum(len(p) for p in parts) > limit:
            return
        if isinstance(n, dict):
            if n.get("type") == "text" and isinstance(n.get("text"), str):
                parts.append(n["text"])
            elif n.get("type") == "hardBreak":
                parts.append("\n")
            for child in n.get("content") or []:
                walk(child)
            if n.get("type") in ("paragraph", "heading", "listItem", "codeBlock", "blockquote"):
                parts.append("\n")
        elif isinstance(n, list):
            for child in n:
                walk(child)

    walk(node)
    return "".join(parts).strip()[:limit]


def parse_ticket(raw: Any) -> Ticket:
    """The ticket in a decoded JSON body: Jira's form when it has ``webhookEvent``, the generic form otherwise.

    Raises:
        PayloadError: not an object, unknown or missing fields (generic), wrong types, or a Jira event
            other than ``jira:issue_created``.
    """
    if not isinstance(raw, dict):
        raise PayloadError([{"field": "(body)", "message": "must be a JSON object"}])
    if "servicenow" in raw:
        from integrations.servicenow import parse_servicenow  # its module imports this one

        return parse_servicenow(raw)
    if "webhookEvent" in raw:
        try:
            jira = JiraDelivery.model_validate(raw)
        except ValidationError as exc:
            raise PayloadError(_problems(exc)) from None
        if jira.webhookEvent != "jira:issue_created":
            raise PayloadError([{"field": "webhookEvent",
                                 "message": f"only jira:issue_created is handled, got {jira.webhookEvent[:60]!r}"}])
        f = jira.issue.fields
        desc = f.description if isinstance(f.description, str) else adf_text(f.description) if f.description else ""
        rep = f.reporter
        reporter = (rep.emailAddress or rep.displayName or rep.accountId) if rep else None
        return Ticket(id=jira.issue.key, source=TicketSource.JIRA, title=f.summary, description=desc,
                      reporter=reporter, fields={})
    try:
        g = GenericDelivery.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(_problems(exc)) from None
    t = g.ticket
    fields = t.fields.model_dump(exclude_none=True)
    if t.fields.occurred_at is not None:
        fields["occurred_at"] = t.fields.occurred_at.isoformat()
    return Ticket(id=t.id, source=TicketSource.GENERIC, title=t.title, description=t.description,
                  reporter=t.reporter, fields=fields)
