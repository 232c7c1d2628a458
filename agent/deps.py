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
from agent.llm_types import Draft, Fallback, FallbackReason, PlanResult
from agent.narrative import Audience, Evidence, Narrative
from agent.narrator_offline import narrate as narrate_offline
from agent.planner import plan
from agent.verifier import verify
from risk.audit import Ledger
from tools.context import ToolContext
from tools.registry import call_tool


class Planner(Protocol):
    name: str

    def plan(self, question: str, *, ctx: ToolContext) -> PlanResult: ...


class Narrator(Protocol):
    name: str

    def draft(self, ev: Evidence, audience: Audience) -> Draft: ...


class OfflinePlanner:
    name = "offline"

    def plan(self, question: str, *, ctx: ToolContext) -> PlanResult:
        known = call_tool(ctx, "known_entities", {})
        return PlanResult(plan=plan(question, users=set(known.users), resources=set(known.resources)),
                          planner=self.name)


class OfflineNarrator:
    name = "offline"

    def draft(self, ev: Evidence, audience: Audience) -> Draft:
        return Draft(narrative=narrate_offline(ev, audience))


def _no_op(stage: str, reason: str) -> None:
    return None


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
    on_fallback: Callable[[str, str], None] = _no_op  # (stage, reason): the service counts them for /metrics

    def narrate(self, ev: Evidence, audience: Audience) -> tuple[Narrative, dict[str, Any]]:
        """Draft with the configured narrator, verify, and fall back to the deterministic narrative on failure.

        Returns the narrative shown and its verification record: ``verified``, ``failures``, ``narration``
        (usage, dropped sentences, tools used) and, after a fallback, ``fallback_from`` with its reason.
        A draft is never shown unverified, and no draft at all (timeout, unparseable) is a failure too.
        """
        shown, verification, _ = self.narrate_draft(ev, audience)
        return shown, verification

    def narrate_draft(self, ev: Evidence, audience: Audience) -> tuple[Narrative, dict[str, Any], Draft]:
        """:meth:`narrate`, and the draft itself (for evals, which score a model's drafts, not only what was shown)."""
        draft = self.narrator.draft(ev, audience)
        info = {"narrator": self.narrator.name, "usage": draft.usage.model_dump(mode="json") if draft.usage else None,
                "dropped": [d.model_dump() for d in draft.dropped], "tools_used": draft.tools_used}
        if draft.narrative is not None:
            check = verify(draft.narrative, ev)
            if check.verified:
                return draft.narrative, {"verified": True, "failures": [], "narration": info}, draft
            if isinstance(self.narrator, OfflineNarrator):  # a bug in our own narrator: say so, never hide it
                return draft.narrative, {"verified": False, "failures": [f.model_dump() for f in check.failures],
                                         "narration": info}, draft
            reason, failures = FallbackReason.VERIFICATION.value, [f.model_dump() for f in check.failures]
        else:
            fb = draft.fallback or Fallback(reason=FallbackReason.UNPARSEABLE, detail="no draft")
            reason, failures = fb.reason.value, [{"check": fb.reason.value, "detail": fb.detail[:300]}]
        self.on_fallback("narrator", reason)
        fallback = narrate_offline(ev, audience)
        again = verify(fallback, ev)
        return fallback, {"verified": again.verified, "failures": [f.model_dump() for f in again.failures],
                          "narration": info, "fallback_from": {"narrator": self.narrator.name, "reason": reason,
                                                               "failures": failures, "dropped": info["dropped"]}}, draft
