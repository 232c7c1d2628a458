"""Who may approve what: the approval rules of the exception-process policy, as data.

Approval is not authorization: every approval is checked here, whatever channel it
came through (CLI, HTTP, Slack, an agent thread), against the principal's roles from
the configuration file and the rules in the policy's front matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from risk.policy import PolicySet


class Kind(StrEnum):
    CONFIRM_DENIAL = "confirm_denial"
    GRANT_EXCEPTION = "grant_exception"
    REVOKE_SESSION = "revoke_session"
    CHANGE_THRESHOLD = "change_threshold"
    PROMOTE_MODEL = "promote_model"


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Role(StrEnum):
    ANALYST = "analyst"
    POLICY_OWNER = "policy_owner"
    INGEST = "ingest"
    ADMIN = "admin"


class Channel(StrEnum):
    CLI = "cli"
    API = "api"
    SLACK = "slack"


class Refusal(StrEnum):
    NOT_FOUND = "not_found"
    NOT_PENDING = "not_pending"
    EXPIRED = "expired"
    SELF_APPROVAL = "self_approval"
    NOT_ENTITLED = "not_entitled"
    ALREADY_DECIDED = "already_decided"
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    UNKNOWN_PRINCIPAL = "unknown_principal"


class ApprovalError(Exception):
    """An approval or rejection was refused; nothing changed. ``reason`` says why, for code."""

    def __init__(self, reason: Refusal, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Principal:
    """A person or service known to glassgate, from the configuration file."""

    id: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class KindRule:
    roles: frozenset[Role]
    approvers: int
    max_duration_hours: float | None
    api_only_tiers: frozenset[str]
    section: str | None


@dataclass(frozen=True)
class ApprovalRules:
    """The machine-readable approval rules and the policy version that states them."""

    policy_id: str
    policy_version: int
    default_expiry_minutes: int
    kinds: Mapping[Kind, KindRule]

    @classmethod
    def from_policy(cls, policy: PolicySet) -> ApprovalRules:
        """Read the rules from the one policy document whose front matter carries ``approvals``."""
        docs = [d for d in policy.docs if getattr(d, "approvals", None)]
        if len(docs) != 1:
            raise ValueError(f"exactly one policy must define approvals; found {[d.id for d in docs] or 'none'}")
        doc = docs[0]
        raw: Mapping[str, Any] = getattr(doc, "approvals", None) or {}
        kinds = {}
        for kind in Kind:
            k = raw["kinds"].get(kind.value)
            if k is None:
                raise ValueError(f"{doc.id} sets no approval rule for {kind.value}")
            kinds[kind] = KindRule(roles=frozenset(Role(r) for r in k["roles"]), approvers=int(k["approvers"]),
                                   max_duration_hours=k.get("max_duration_hours"),
                                   api_only_tiers=frozenset(k.get("api_only_tiers", ())), section=k.get("section"))
        return cls(policy_id=doc.id, policy_version=doc.version,
                   default_expiry_minutes=int(raw.get("default_expiry_minutes", 60)), kinds=kinds)

    def cite(self, kind: Kind) -> str:
        section = self.kinds[kind].section
        return f"{self.policy_id} v{self.policy_version}" + (f" §{section}" if section else "")


def check_entitled(*, rules: ApprovalRules, kind: Kind, principal: Principal, requested_by: str,
                   prior_approvers: Iterable[str], channel: Channel, tier: str | None = None,
                   tiers: Iterable[str] = ()) -> None:
    """Raise ApprovalError unless ``principal`` may decide this proposal now, through ``channel``.

    ``tier`` / ``tiers``: the sensitivity tiers the proposal governs (a threshold change on ``kind:ot`` governs
    every OT resource's tier, restricted consoles included); any of them being API-only makes the API the only
    channel."""
    rule = rules.kinds[kind]
    governed = set(tiers) | ({tier} if tier is not None else set())
    if principal.id == requested_by:
        raise ApprovalError(Refusal.SELF_APPROVAL, f"{principal.id} requested this {kind.value}; the requester can "
                            f"never approve or reject their own request ({rules.cite(kind)})")
    if principal.id in set(prior_approvers):
        raise ApprovalError(Refusal.ALREADY_DECIDED, f"{principal.id} has already decided this proposal; approvers "
                            f"must be distinct ({rules.cite(kind)})")
    if not (principal.roles & rule.roles):
        need = " or ".join(sorted(r.value for r in rule.roles))
        have = ", ".join(sorted(r.value for r in principal.roles)) or "no roles"
        raise ApprovalError(Refusal.NOT_ENTITLED, f"{principal.id} ({have}) may not decide a {kind.value}: it needs "
                            f"the role {need} ({rules.cite(kind)})")
    api_only = sorted(governed & rule.api_only_tiers)
    if api_only and channel is not Channel.API:
        raise ApprovalError(Refusal.CHANNEL_NOT_ALLOWED, f"a {kind.value} that governs the {'/'.join(api_only)} tier "
                            f"may only be approved over the API (with its own authentication), not via "
                            f"{channel.value} ({rules.cite(kind)})")
