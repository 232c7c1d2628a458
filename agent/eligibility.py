"""Eligibility at execution: re-derived from the recorded approvals, never from a status column.

The executor calls :func:`eligibility` under the proposal's row lock, just before any IAM adapter call. A
``proposals.status = 'approved'`` row is only a hint that the proposal is due; what makes it executable is
the set of approval rows themselves: enough distinct approvers, each holding (when they approved, and still
now when the current principals are known) a role the rules entitle, none of them the requester, each
approval recorded before the proposal expired, through a channel the proposal's tier allows, and no
rejection. An exception's window starts at the approval that completed the quorum and is never extended by
a late execution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.approval import ApprovalRules, Channel, Kind, Principal, Role
from risk.store.control import ApprovalRow, ProposalRow

TiersOf = Callable[[Mapping[str, Any]], Iterable[str] | str | None]


class Ineligibility(StrEnum):
    REJECTED = "rejected"
    SELF_APPROVAL = "self_approval"
    NO_QUORUM = "no_quorum"
    WINDOW_ENDED = "window_ended"


class Ineligible(Exception):
    """The proposal may not be executed; ``reason`` says why, for code, ``str()`` for people."""

    def __init__(self, reason: Ineligibility, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Eligibility:
    """Who approved (the counted approvers, in order) and when the quorum was reached (epoch ms)."""

    approvers: tuple[str, ...]
    approved_ms: int
    ends_ms: int | None  # an exception's end: approval + its duration; None for other kinds


def tiers(value: Iterable[str] | str | None) -> frozenset[str]:
    """A ``tier_of`` result as a set: one tier, several, or none."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


def eligibility(s: Session, row: ProposalRow, *, rules: ApprovalRules, now_ms: int,
                principals: Mapping[str, Principal] | None = None,
                tier_of: TiersOf = lambda _p: None) -> Eligibility:
    """Re-derive from the approval rows whether ``row`` may be executed now.

    Args:
        s: the session holding the proposal's row lock.
        row: the proposal.
        rules: who may approve what, and how many approvals each kind needs.
        now_ms: the time of execution.
        principals: the configured principals; when given, an approver must still be one of them and still
            hold an entitled role.
        tier_of: the sensitivity tier(s) the proposal's payload governs (for the API-only rule).

    Raises:
        Ineligible: a rejection, an approval by the requester, too few counted approvals, or an exception
            whose approved window is over.
    """
    kind = Kind(row.kind)
    rule = rules.kinds[kind]
    api_only = tiers(tier_of(row.payload)) & rule.api_only_tiers
    counted: list[ApprovalRow] = []
    ignored: list[str] = []
    for a in s.scalars(select(ApprovalRow).where(ApprovalRow.proposal_id == row.proposal_id).order_by(ApprovalRow.id)):
        if a.decision != "approve":
            raise Ineligible(Ineligibility.REJECTED, f"{a.principal} rejected proposal {row.proposal_id}")
        if a.principal == row.requested_by:
            raise Ineligible(Ineligibility.SELF_APPROVAL, f"{a.principal} requested proposal {row.proposal_id} and "
                             "an approval by them is recorded; the requester can never approve")
        held = {Role(r) for r in (a.roles or []) if r in Role.__members__.values()}
        now = principals.get(a.principal) if principals is not None else None
        if not held & rule.roles:
            ignored.append(f"{a.principal}: no entitled role recorded with the approval")
        elif principals is not None and (now is None or not now.roles & rule.roles):
            ignored.append(f"{a.principal}: no longer a principal entitled to approve a {kind.value}")
        elif a.at_ms > row.expires_ms:
            ignored.append(f"{a.principal}: approved after the proposal expired")
        elif api_only and a.channel != Channel.API.value:
            ignored.append(f"{a.principal}: approved via {a.channel}, but the {'/'.join(sorted(api_only))} tier "
                           "needs the API")
        elif all(c.principal != a.principal for c in counted):
            counted.append(a)
    if len(counted) < rule.approvers:
        why = f" (not counted: {'; '.join(ignored)})" if ignored else ""
        raise Ineligible(Ineligibility.NO_QUORUM, f"proposal {row.proposal_id} has {len(counted)} valid approval(s) "
                         f"of the {rule.approvers} a {kind.value} needs ({rules.cite(kind)}){why}; not executed")
    approved_ms = counted[rule.approvers - 1].at_ms
    ends_ms = None
    if kind is Kind.GRANT_EXCEPTION:
        ends_ms = approved_ms + int(float(row.payload["duration_hours"]) * 3_600_000)
        if now_ms >= ends_ms:
            raise Ineligible(Ineligibility.WINDOW_ENDED, f"the exception of proposal {row.proposal_id} was approved "
                             f"for a window that has ended; it is not started late")
    return Eligibility(approvers=tuple(a.principal for a in counted), approved_ms=approved_ms, ends_ms=ends_ms)
