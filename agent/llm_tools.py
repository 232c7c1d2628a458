"""Tool use for questions outside the planner's kinds: the model calls the registry's READ-ONLY tools in a
bounded loop, and the facts they return become evidence that the narrative is verified against.

Only read-only tools are bound (:func:`tools.registry.read_only_specs`); a call of any other name (an action
tool, or one the model made up) is refused and never run. Every call's arguments are validated by the tool's
input model (a bad field goes back to the model as the tool's error). The loop stops after ``max_calls``.
"""

from __future__ import annotations

import json
from typing import Any

import openai
from pydantic import BaseModel, Field

from agent.gather import _decision_citations
from agent.llm import LlmConfig, call
from agent.llm_parse import json_answer
from agent.llm_types import Fallback, Usage
from agent.narrative import Citation, Evidence, Intent
from agent.prompts import DATA_NOT_INSTRUCTIONS, safe_json
from tools.context import ToolContext
from tools.errors import ToolError
from tools.registry import call_tool, is_read_only, read_only_specs

EXPLORER_SYSTEM = f"""You answer an analyst's question about access decisions by calling the tools you are given,
one call at a time, to look up facts. When you have the facts, reply with the word DONE. You can only read:
nothing you call approves, grants or changes anything. {DATA_NOT_INSTRUCTIONS}"""
TOOL_RESULT_CHARS = 1500  # what one tool result may add to the prompt


class Exploration(BaseModel):
    evidence: Evidence
    tools_used: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)  # calls not run: not a read-only tool
    fallback: Fallback | None = None
    usage: list[Usage] = Field(default_factory=list)


def _calls(message: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, name, arguments) of the tool calls in a message, native or written as JSON text."""
    out = []
    for c in getattr(message, "tool_calls", None) or []:
        try:
            args = json.loads(c.function.arguments or "{}")
        except json.JSONDecodeError:
            args = {"_unparseable": c.function.arguments}
        out.append((c.id, c.function.name, args if isinstance(args, dict) else {}))
    if not out:
        got = json_answer(message)
        if not isinstance(got, Fallback) and isinstance(got[0].get("name"), str):
            args = got[0].get("arguments") or got[0].get("parameters") or {}
            out.append(("call_text", got[0]["name"], args if isinstance(args, dict) else {}))
    return out


def _keep(ev: Evidence, ctx: ToolContext, name: str, result: Any) -> None:
    """Facts the verifier can check against go into the evidence."""
    data = result.model_dump(mode="json")
    if name == "find_decisions":
        ev.matches += data["decisions"]
    elif name == "get_decision" and ev.decision is None:
        ev.decision, ev.explanation, ev.event = data["decision"], data["explanation"], data["event"]
        ev.citations += _decision_citations(ctx, ev.decision, ev.explanation)
    elif name == "session_timeline" and ev.timeline is None:
        ev.timeline = data
    elif name == "search_policies":
        ev.citations += [Citation.model_validate(p) for p in data["passages"]]
    elif name == "get_policy_section":
        ev.citations.append(Citation.model_validate({**data, "version": data["version"]}))


def explore(client: openai.OpenAI, cfg: LlmConfig, *, model: str, question: str, ctx: ToolContext,
            max_calls: int) -> Exploration:
    """Let the model look facts up for ``question`` with at most ``max_calls`` read-only tool calls."""
    ev = Evidence(intent=Intent.UNSUPPORTED, question=question)
    out = Exploration(evidence=ev)
    messages: list[dict[str, Any]] = [{"role": "system", "content": EXPLORER_SYSTEM},
                                      {"role": "user", "content": f"<question>\n{safe_json(question)}\n</question>"}]
    specs = read_only_specs()
    while len(out.tools_used) + len(out.refused) < max_calls:
        msg, usage = call(client, cfg, model=model, messages=messages, max_tokens=cfg.plan_max_tokens, tools=specs,
                          tool_choice="auto")
        out.usage.append(usage)
        if isinstance(msg, Fallback):
            out.fallback = msg
            break
        calls = _calls(msg)[: max_calls - len(out.tools_used) - len(out.refused)]
        if not calls:
            break
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}} for i, n, a in calls]})
        for call_id, name, args in calls:
            if not is_read_only(name):
                out.refused.append(name)
                result = f"error: {name!r} is not a tool you can call"
            else:
                try:
                    got = call_tool(ctx, name, args)
                    out.tools_used.append(name)
                    _keep(ev, ctx, name, got)
                    result = safe_json(got.model_dump(mode="json"))[:TOOL_RESULT_CHARS]
                except ToolError as exc:
                    out.tools_used.append(name)
                    result = f"error: {exc}"[:500]
            messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
    if not out.tools_used:
        ev.note = "No facts were looked up for this question."
    return out


__all__ = ["Exploration", "explore"]
