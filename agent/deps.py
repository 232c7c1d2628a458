"""What the agent is handed: tools, the chosen planner and narrator, approval rules, ledger, IAM, clock.

Built once at the edge (integrations) and passed in; tests build their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from agent.approval import ApprovalRules, Principal
from agent.iam import IamAdapter
from agent.narrative import Audience, Evidence, Narrative
from agent.narrator_offline import narrate as narrate_offline
from agent.planner import Plan, plan
from agent.verifier import verify
from risk.audit import Ledger
from tools.context import ToolContext
from tools.registry import call_tool


class Planner(Protocol):
    name: str

    def plan(self, question: str, *, ctx: ToolContext) -> Plan: ...


class Narrator(Protocol):
    name: str

    def draft(self, ev: Evidence, audience: Audience) -> Narrative: ...


class OfflinePlanner:
    name = "offline"

    def plan(self, question: str, *, ctx: ToolContext) -> Plan:
        known = call_tool(ctx, "known_entities", {})
        return plan(question, users=set(known.users), resources=set(known.resources))


class OfflineNarrator:
    name = "offline"

    def draft(self, ev: Evidence, audience: Audience) -> Narrative:
        return narrate_offline(ev, audience)


def _tier_of(payload: Mapping[str, Any]) -> str | None:
    scope = str(payload.get("scope", ""))
    return scope.split(":", 1)[1] if scope.startswith("tier:") else None


@dataclass
class AgentDeps:
    tools: ToolContext
    rules: ApprovalRules
    ledger: Ledger
    iam: IamAdapter
    clock: Callable[[], datetime]
    principals: Mapping[str, Principal] = field(default_factory=dict)
    planner: Planner = field(default_factory=OfflinePlanner)
    narrator: Narrator = field(default_factory=OfflineNarrator)
    tier_of: Callable[[Mapping[str, Any]], str | None] = _tier_of

    def narrate(self, ev: Evidence, audience: Audience) -> tuple[Narrative, dict[str, Any]]:
        """Draft with the configured narrator, verify, and fall back to the deterministic narrative on failure."""
        from agent.llm import LlmUnavailable

        try:
            draft = self.narrator.draft(ev, audience)
        except LlmUnavailable as exc:
            fallback = narrate_offline(ev, audience)
            again = verify(fallback, ev)
            return fallback, {"verified": again.verified, "failures": [f.model_dump() for f in again.failures],
                              "fallback_from": {"narrator": self.narrator.name, "failures": [
                                  {"check": "unavailable", "detail": str(exc)[:300]}]}}
        check = verify(draft, ev)
        if check.verified:
            return draft, {"verified": True, "failures": []}
        if isinstance(self.narrator, OfflineNarrator):  # a bug in our own narrator: say so, never hide it
            return draft, {"verified": False, "failures": [f.model_dump() for f in check.failures]}
        fallback = narrate_offline(ev, audience)
        again = verify(fallback, ev)
        return fallback, {"verified": again.verified, "failures": [f.model_dump() for f in again.failures],
                          "fallback_from": {"narrator": draft.narrator,
                                            "failures": [f.model_dump() for f in check.failures]}}
