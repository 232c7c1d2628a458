"""The offline planner: what a question is about, and which tools answer it.

It reads only the question. It understands the question kinds the product supports and
says plainly when a question is outside them. A plan never contains an action: proposals
are drafted later from evidence (threshold tuning), never from words in a question.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from agent.narrative import Intent

WHEN_PHRASES = ("this morning", "this afternoon", "this evening", "today", "yesterday", "last hour", "last 24 hours",
                "this week", "last week", "this month")
OUTCOME_WORDS = {"denied": "deny", "blocked": "deny", "refused": "deny", "stepped up": "step_up", "step-up": "step_up",
                 "challenged": "step_up", "allowed": "allow", "let in": "allow"}
ACTION_WORDS = (
    ("compliant_managed_device", ("compliant", "managed laptop", "managed device", "patched", "edr running", "edr on")),
    ("reauth_phishing_resistant", ("webauthn", "phishing-resistant", "phishing resistant", "security key",
                                   "re-authenticated", "reauthenticated", "passkey")),
    ("corporate_network", ("corporate network", "office network", "from the office", "corporate vpn", "not on tor")),
    ("normal_volume", ("normal volume", "less data", "lower volume", "fewer requests", "usual volume")),
)
TIERS = ("public", "internal", "confidential", "restricted")
KINDS = {"ot": "ot", "ot console": "ot", "ot consoles": "ot", "admin console": "admin_console", "saas": "saas",
         "database": "database", "cloud api": "cloud_api"}


# Names of the IAM systems whose decisions glassgate explains in shadow (integrations.ingest).
VENDOR_WORDS = {"okta": "okta", "entra": "entra", "azure ad": "entra", "microsoft": "entra", "azure": "entra",
                "ocsf": "ocsf"}
VENDOR_OUTCOMES = {"deny": "deny", "step_up": "challenge", "allow": "allow"}


class Plan(BaseModel):
    intent: Intent
    vendor: str | None = None  # a question about a decision Okta, Entra or an OCSF source made
    user_id: str | None = None
    resource_id: str | None = None
    session_id: str | None = None
    decision_id: str | None = None
    outcome: str | None = None
    when: str | None = None
    at: str | None = None
    actions: list[str] = Field(default_factory=list)
    scope: str | None = None
    query: str | None = None
    reason: str | None = None


SUPPORTED = ("why a decision came out as it did (\"why was alice denied access to payroll-db this morning?\"), "
             "what changed in a session (\"what changed in session s-123?\"), what-if questions (\"would alice have "
             "been allowed with a compliant laptop?\"), what a policy says (\"which policy sets the threshold for OT "
             "consoles?\"), and whether thresholds are too strict (\"are restricted-tier denials too strict this month?\")")


def _known(tokens: Iterable[str], known: set[str]) -> str | None:
    return next((t for t in tokens if t in known), None)


def _known_user(tokens: list[str], users: set[str]) -> str | None:
    """A user named by id, or by the local part of a unique e-mail id (vendor logs name people by e-mail)."""
    exact = _known(tokens, users)
    if exact:
        return exact
    by_local: dict[str, list[str]] = {}
    for u in users:
        if "@" in u:
            by_local.setdefault(u.split("@", 1)[0].lower(), []).append(u)
    return next((by_local[t.lower()][0] for t in tokens if len(by_local.get(t.lower(), [])) == 1), None)


def plan(question: str, *, users: set[str], resources: set[str]) -> Plan:
    """Classify ``question`` and pull out the entities it names.

    Args:
        question: the analyst's words (data, never instructions).
        users, resources: ids known to the store, so that a name is recognised only if it exists.
    """
    q = " ".join(question.strip().split())
    low = q.lower()
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*", q)
    tokens = [t.rstrip(".,?!:;'\"") for t in tokens]
    base: dict[str, Any] = {
        "user_id": _known_user([t.removesuffix("'s") for t in tokens], users),
        "resource_id": _known(tokens, resources),
        "session_id": next((t for t in tokens if re.fullmatch(r"s-[0-9a-f]{3,}", t)), None),
        "decision_id": next((t for t in tokens if re.fullmatch(r"dec-[0-9a-f]{6,}", t)), None),
        "outcome": next((v for k, v in OUTCOME_WORDS.items() if k in low), None),
        "when": next((w for w in WHEN_PHRASES if w in low), None),
    }
    vendor = next((v for k, v in VENDOR_WORDS.items() if re.search(rf"\b{k}\b", low)), None)
    at = re.search(r"\b(?:at|around)\s+(\d{1,2}:\d{2})\b", low)
    if at:
        base["at"], base["when"] = at.group(1), f"around {at.group(1)}"
    if re.search(r"\b(too strict|too lenient|too loose|too many (?:denials|step-ups)|loosen|tighten|tune|tuning)\b", low) \
            or (vendor and re.search(r"\b(disagree|disagreements?|false positives?|rules?)\b", low)
                and not base["user_id"]):
        scope = next((f"tier:{t}" for t in TIERS if t in low), None) or next(
            (f"kind:{v}" for k, v in KINDS.items() if re.search(rf"\b{k}\b", low)), None)
        when = base["when"] or (None if vendor else "this month")
        return Plan(intent=Intent.TUNING, scope=scope or "tier:restricted", when=when, vendor=vendor)
    if re.search(r"\b(which|what) polic(y|ies)\b|\bpolicy (for|on|says|about)\b|\bwho (may|can) approve\b|"
                 r"\bhow long (can|may)\b|\bthreshold for\b", low) and not base["user_id"] and not base["decision_id"]:
        return Plan(intent=Intent.POLICY_LOOKUP, query=q)
    if re.search(r"\bwould\b.*\b(allowed|permitted|denied|stepped up|let in)\b|\bwhat if\b|\bhad (she|he|they)\b", low):
        actions = [a for a, words in ACTION_WORDS if any(w in low for w in words)]
        if not actions:
            return Plan(intent=Intent.UNSUPPORTED, reason="a what-if question must name a change I can re-score: a "
                        "compliant managed device, re-authenticating with WebAuthn, the corporate network, or normal volume")
        return Plan(intent=Intent.WHAT_IF, actions=actions, **{**base, "outcome": None})  # "allowed" is the hypothesis
    if base["session_id"] and re.search(r"\b(what changed|what happened|timeline|session)\b", low):
        return Plan(intent=Intent.SESSION_CHANGE, **base)
    if base["decision_id"] or (re.search(r"\bwhy\b|\bexplain\b|\bhow come\b", low) and (base["user_id"] or base["resource_id"])):
        if vendor and not base["decision_id"]:  # "why did Okta deny alice?": the outcome is the vendor's
            words = {**OUTCOME_WORDS, "deny": "deny", "block": "deny", "challenge": "step_up", "allow": "allow"}
            said = next((v for k, v in words.items() if re.search(rf"\b{k}\b", low)), None)
            return Plan(intent=Intent.WHY_DECISION, vendor=vendor, **{**base, "outcome": said})
        return Plan(intent=Intent.WHY_DECISION, vendor=vendor, **base)
    return Plan(intent=Intent.UNSUPPORTED, reason=f"I can answer questions about {SUPPORTED}.")
