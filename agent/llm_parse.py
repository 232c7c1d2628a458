"""Reading a JSON answer out of whatever shape a real server sends it in.

llama.cpp-style servers answer a forced tool call as ``tool_calls``, JSON mode as plain content, and an
unforced call often as JSON text inside the content, fenced (```json ...```) or not, sometimes with prose
around it. All of these are read; what cannot be read is a :class:`~agent.llm_types.Fallback`, never an
exception and never text shown to anyone.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.llm_types import Fallback, FallbackReason

FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
# Keys only a JSON Schema has: a draft or plan carrying them copied the schema instead of answering.
SCHEMA_KEYS = frozenset({"$defs", "$schema", "$ref", "properties", "anyOf", "additionalProperties", "required",
                         "items", "enum"})
# Placeholders a model writes when it fills the schema's types in as values.
TYPE_WORDS = frozenset({"string", "str", "number", "integer", "int", "float", "boolean", "null", "object", "array"})


def _first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (prose before or after it is ignored)."""
    dec = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def json_answer(message: Any, *, tool: str | None = None) -> tuple[dict[str, Any], str] | Fallback:
    """The JSON object a chat message carries, and the shape it came in.

    Args:
        message: an OpenAI ``ChatCompletionMessage`` (or None).
        tool: the function whose call is the answer, when one was asked for; a call of any other
            function is ignored (action tools are never bound, so a call to one is noise).
    """
    if message is None:
        return Fallback(reason=FallbackReason.UNPARSEABLE, detail="the reply has no message")
    for call in getattr(message, "tool_calls", None) or []:
        if tool is None or call.function.name == tool:
            try:
                obj = json.loads(call.function.arguments or "")
            except json.JSONDecodeError as exc:
                return Fallback(reason=FallbackReason.UNPARSEABLE, detail=f"tool call arguments are not JSON ({exc.msg})")
            if isinstance(obj, dict):
                return obj, "tool_call"
    text = (getattr(message, "content", None) or "").strip()
    if not text:
        return Fallback(reason=FallbackReason.UNPARSEABLE, detail="the reply is empty"
                        + (f" (no {tool} call)" if tool else ""))
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return _unwrap(obj, tool), "json"
    except json.JSONDecodeError:
        pass
    for block in FENCE.findall(text):
        got = _first_object(block)
        if got is not None:
            return _unwrap(got, tool), "fenced_json"
    got = _first_object(text)
    if got is not None:
        return _unwrap(got, tool), "embedded_json"
    return Fallback(reason=FallbackReason.UNPARSEABLE, detail=f"no JSON object in the reply ({len(text)} characters)")


def _unwrap(obj: dict[str, Any], tool: str | None) -> dict[str, Any]:
    """A tool call written as text: ``{"name": "make_plan", "arguments": {...}}`` is its arguments."""
    args = obj.get("arguments", obj.get("parameters"))
    called = isinstance(obj.get("name"), str) and (obj["name"] == tool if tool else set(obj) <= {"name", "arguments",
                                                                                                 "parameters", "id"})
    if called and isinstance(args, dict):
        return args
    if called and isinstance(args, str):
        inner = _first_object(args)
        return inner if inner is not None else obj
    return obj


def schema_echo(obj: Any, *, depth: int = 0) -> str | None:
    """Where ``obj`` looks like a JSON Schema rather than an answer (None: it does not)."""
    if depth > 6:
        return None
    if isinstance(obj, dict):
        keys = SCHEMA_KEYS & set(obj)
        if keys:
            return f"schema keyword {sorted(keys)[0]!r}"
        if obj.get("type") in ("object", "array") and "title" in obj:
            return "a schema object (type and title)"
        for k in ("subject", "text", "policy_id"):
            if isinstance(obj.get(k), str) and obj[k].strip().lower() in TYPE_WORDS:
                return f"{k} is the type name {obj[k]!r}"
        return next((w for v in obj.values() if (w := schema_echo(v, depth=depth + 1))), None)
    if isinstance(obj, list):
        return next((w for v in obj if (w := schema_echo(v, depth=depth + 1))), None)
    return None


__all__ = ["json_answer", "schema_echo"]
