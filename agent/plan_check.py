"""Checking a model's plan: every id it names exists, every outcome the question names is kept.

A plan field that fails is dropped (and listed); a plan that is left naming nothing it can answer, or
that lost the outcome the asker named, is refused, and the offline planner answers instead. Without the
outcome check a model that forgets "denied" explains the user's latest *allowed* decision instead.
"""

from __future__ import annotations

import re
from typing import Any

from agent.llm_types import Fallback, FallbackReason
from agent.narrative import Intent
from agent.planner import OUTCOME_WORDS, SUPPORTED, Plan
from risk.counterfactual import ACTIONS
from tools.context import ToolContext
from tools.errors import ToolError
from tools.registry import call_tool
from tools.when import resolve_when

ACTION_IDS = frozenset(a.id for a in ACTIONS)
OUTCOMES = frozenset({"allow", "step_up", "deny"})
SCOPES = frozenset({f"tier:{t}" for t in ("public", "internal", "confidential", "restricted")}
                   | {f"kind:{k}" for k in ("saas", "database", "cloud_api", "ot", "admin_console")})
ID_TOOL = {"decision_id": "get_decision", "session_id": "session_timeline"}


def named_outcome(question: str) -> str | None:
    """The outcome the question names in words ("denied" -> deny), if any."""
    low = question.lower()
    return next((v for k, v in OUTCOME_WORDS.items() if re.search(rf"\b{re.escape(k)}\b", low)), None)


def _exists(ctx: ToolContext, name: str, value: str) -> bool:
    try:
        call_tool(ctx, ID_TOOL[name], {name: value})
    except ToolError:
        return False
    return True


def checked(p: Plan, question: str, ctx: ToolContext, *, users: set[str], resources: set[str],
            dropped: list[str]) -> Plan | Fallback:
    """``p`` with every unusable field dropped (appended to ``dropped`` as name=value), or why it is refused."""
    fields: dict[str, Any] = p.model_dump()
    invented = False

    def keep(name: str, ok: bool) -> None:
        if fields[name] is not None and not ok:
            dropped.append(f"{name}={fields[name]!r}")
            fields[name] = None

    keep("user_id", fields["user_id"] in users)
    keep("resource_id", fields["resource_id"] in resources)
    for name in ("session_id", "decision_id"):  # taken from the asker's words, and it must be in the store
        value = fields[name]
        said = bool(value) and re.search(rf"(?<![\w-]){re.escape(str(value))}(?![\w-])", question) is not None
        ok = said and len(str(value)) <= 64 and _exists(ctx, name, str(value))
        invented |= value is not None and not ok
        keep(name, ok)
    invented |= p.user_id is not None and fields["user_id"] is None
    keep("outcome", fields["outcome"] in OUTCOMES)
    keep("scope", fields["scope"] in SCOPES)
    keep("at", bool(re.fullmatch(r"\d{1,2}:\d{2}", str(fields["at"]))))
    if fields["when"] is not None:
        try:
            resolve_when(fields["when"], now=ctx.now(), tz=ctx.tz)
        except (ToolError, ValueError):
            keep("when", False)
    dropped += [f"action={a!r}" for a in fields["actions"] if a not in ACTION_IDS]
    fields["actions"] = [a for a in dict.fromkeys(fields["actions"]) if a in ACTION_IDS]
    named = named_outcome(question)
    if p.intent is Intent.WHY_DECISION and named and fields["outcome"] != named:
        return Fallback(reason=FallbackReason.DROPPED_OUTCOME, detail=f"the question names {named}; the plan has "
                        f"{fields['outcome'] or 'no outcome'}")
    if p.intent is Intent.WHAT_IF and not fields["actions"]:
        return Fallback(reason=FallbackReason.INVALID_PLAN, detail="the what-if plan names no re-score action")
    if p.intent is Intent.SESSION_CHANGE and not fields["session_id"]:
        return Fallback(reason=FallbackReason.INVENTED_ID if invented else FallbackReason.INVALID_PLAN,
                        detail="the session plan names no session id from the question that exists")
    if p.intent in (Intent.WHY_DECISION, Intent.WHAT_IF) and not any(
            fields[k] for k in ("user_id", "resource_id", "decision_id", "session_id")):
        return Fallback(reason=FallbackReason.INVENTED_ID if invented else FallbackReason.INVALID_PLAN,
                        detail="the plan names no known user, resource or decision")  # else it explains any decision
    if p.intent is Intent.UNSUPPORTED:  # our words, not the model's, go back to the asker
        fields["reason"] = f"I can answer questions about {SUPPORTED}."
    return Plan.model_validate(fields)


__all__ = ["ACTION_IDS", "OUTCOMES", "SCOPES", "checked", "named_outcome"]
