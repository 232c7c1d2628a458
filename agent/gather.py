"""Gathering facts: a plan becomes evidence by calling the typed tools, and nothing else.

Every fact reaches the agent through :func:`tools.registry.call_tool`, the same path the
CLI, the HTTP API and Slack use.
"""

from __future__ import annotations

from typing import Any

from agent.narrative import Citation, Evidence, Intent
from agent.planner import Plan
from agent.vendor import vendor_decision_ids, vendor_tuning
from tools.context import ToolContext
from tools.errors import ToolError
from tools.registry import call_tool


def _json(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _cite(ctx: ToolContext, policy_id: str, section: str, version: int | None) -> Citation | None:
    try:
        p = call_tool(ctx, "get_policy_section", {"policy_id": policy_id, "section": section, "version": version})
    except ToolError:
        return None
    return Citation(policy_id=p.policy_id, version=p.version, section=p.section, heading=p.heading, text=p.text)


def _decision_citations(ctx: ToolContext, d: dict[str, Any], e: dict[str, Any]) -> list[Citation]:
    wanted = []
    if d.get("threshold_section"):
        wanted.append((d["policy_id"], d["threshold_section"], d["policy_version"]))
    wanted += [(r["policy_id"], r["section"], r["policy_version"]) for r in d.get("rules", [])]
    if d.get("exception"):
        x = d["exception"]
        wanted.append((x["policy_id"], x["section"], x["policy_version"]))
    out = [c for w in dict.fromkeys(wanted) if (c := _cite(ctx, *w)) is not None]
    return out


def _one_decision(ctx: ToolContext, p: Plan, ev: Evidence) -> bool:
    if p.decision_id:
        ids = [p.decision_id]
    elif p.vendor:
        ids = vendor_decision_ids(ctx, p, ev)
        if not ids:
            return False
    else:
        args = {k: v for k, v in {"user_id": p.user_id, "resource_id": p.resource_id, "outcome": p.outcome,
                                   "when": p.when, "limit": 5}.items() if v is not None}
        # "Would X have been allowed ...?" is about a decision that was not an allow.
        tries = [{**args, "outcome": o} for o in ("deny", "step_up")] if p.intent is Intent.WHAT_IF and not p.outcome else []
        ids = []
        for a in [*tries, args]:
            found = call_tool(ctx, "find_decisions", a)
            ev.matches = [_json(m) for m in found.decisions]
            ids = [m["decision_id"] for m in ev.matches]
            if ids:
                break
        if not ids and p.outcome and p.when:  # the asker's time words may be off: widen once
            found = call_tool(ctx, "find_decisions", {k: v for k, v in args.items() if k != "when"})
            ev.matches = [_json(m) for m in found.decisions]
            ids = [m["decision_id"] for m in ev.matches]
    if not ids:
        who = " ".join(x for x in (p.user_id, p.resource_id, p.outcome, p.when) if x)
        ev.note = f"No decision matches ({who or 'nothing specific was named'}); nothing to explain."
        if p.outcome and (p.user_id or p.resource_id):  # explain what did happen instead
            plain = {k: v for k, v in {"user_id": p.user_id, "resource_id": p.resource_id, "limit": 5}.items() if v}
            latest = None
            for a in ([{**plain, "when": p.when}] if p.when else []) + [plain]:
                latest = call_tool(ctx, "find_decisions", a)
                if latest.decisions:
                    break
            if latest is not None and latest.decisions:
                m = latest.decisions[0]
                ev.note = (f"No {p.outcome.replace('_', '-')} decision matches ({who}). The decision found for "
                           f"{' on '.join(x for x in (p.user_id, p.resource_id) if x)}: {m.outcome.value.replace('_', '-')} "
                           f"at {m.timestamp[:16].replace('T', ' ')} UTC ({m.decision_id}), risk {m.risk:.2f}; "
                           f"{latest.total} decisions in all.")
                ev.asked_outcome = p.outcome
                ids = [m.decision_id]
        if not ids:
            return False
    got = call_tool(ctx, "get_decision", {"decision_id": ids[0]})
    ev.decision, ev.explanation, ev.event = _json(got.decision), _json(got.explanation), got.event
    ev.observed = got.observed
    ev.citations = _decision_citations(ctx, ev.decision, ev.explanation)
    return True


def gather(ctx: ToolContext, p: Plan, question: str) -> Evidence:
    """Run the tools the plan needs; never raises for a missing record (the evidence says so)."""
    ev = Evidence(intent=p.intent, question=question, note=p.reason)
    try:
        if p.intent in (Intent.WHY_DECISION, Intent.WHAT_IF):
            if _one_decision(ctx, p, ev) and ev.decision is not None:
                if p.intent is Intent.WHAT_IF:
                    w = call_tool(ctx, "what_if", {"decision_id": ev.decision["decision_id"], "actions": p.actions})
                    ev.what_if = {"decision_id": ev.decision["decision_id"], **_json(w)}
                else:
                    ev.timeline = _json(call_tool(ctx, "session_timeline", {"session_id": ev.decision["session_id"]}))
        elif p.intent is Intent.SESSION_CHANGE:
            ev.timeline = _json(call_tool(ctx, "session_timeline", {"session_id": p.session_id}))
        elif p.intent is Intent.POLICY_LOOKUP:
            found = call_tool(ctx, "search_policies", {"query": p.query or question, "k": 3})
            ev.citations = [Citation(policy_id=x.policy_id, version=x.version, section=x.section, heading=x.heading,
                                     text=x.text) for x in found.passages]
        elif p.intent is Intent.TUNING and p.vendor:
            ev.tuning = vendor_tuning(ctx, vendor=p.vendor, when=p.when)
        elif p.intent is Intent.TUNING:
            from agent.tuning import analyse

            ev.tuning = analyse(ctx, scope=p.scope or "tier:restricted", when=p.when or "this month")
            c = _cite(ctx, ev.tuning["policy_id"], ev.tuning["threshold_section"], ev.tuning["policy_version"])
            ev.citations = [c] if c else []
    except ToolError as exc:
        ev.note = f"I could not gather the facts: {exc}"
    return ev
