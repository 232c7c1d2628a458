"""What every tool is handed: the stores, the policy, the model, the clock and the local time zone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from risk.model import RiskModel
from risk.policy import PolicySet
from risk.store.policies import effective_policy


class Proposer(Protocol):
    """Records a proposal for human approval; implemented by the agent, injected by the edge."""

    def propose(self, *, kind: str, payload: dict[str, Any], evidence: dict[str, Any], requested_by: str,
                thread_id: str | None = None) -> dict[str, Any]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """Dependencies of the tools, built once at the edge (integrations) and passed in.

    Attributes:
        sessions: SQLAlchemy session factory over the decision store.
        policy: the shipped policy set; approved newer versions in the store are applied on top
            (:meth:`policy_in_force`), as the engine does.
        model: the risk model, or None where none is loaded (``what_if`` then refuses).
        clock: aware UTC "now"; tests inject a fixed one.
        tz: the zone in which plain time words ("this morning") are read.
        index: the policy index (used by the policy tools, not by the decision tools).
    """

    sessions: sessionmaker[Session]
    policy: PolicySet
    model: RiskModel | None = None
    clock: Callable[[], datetime] = utcnow
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    index: Any = None
    # Who is calling (set per request by the edge from an authenticated identity, never from tool input),
    # and the agent's proposal store behind the Proposer protocol (tools must not import the agent).
    principal: str | None = None
    proposer: Proposer | None = None

    def now(self) -> datetime:
        """The clock's reading, checked to be timezone-aware."""
        now = self.clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("ToolContext.clock must return an aware datetime")
        return now

    def policy_in_force(self, s: Session) -> PolicySet:
        """``policy`` with every newer approved version applied: the set the engine decides with now."""
        return effective_policy(s, self.policy)
