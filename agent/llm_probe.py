"""What an OpenAI-compatible endpoint can do: does it answer, list models, make a forced tool call, answer in
JSON mode and under a JSON schema. Each probe is one tiny bounded request (a few tokens)."""

from __future__ import annotations

import time
from typing import Any

import openai
from pydantic import BaseModel, Field

from agent.llm import LlmConfig, call
from agent.llm_parse import json_answer
from agent.llm_types import Fallback

PING_TOOL = {"type": "function", "function": {"name": "ping", "description": "Answer the ping.", "parameters": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}
PING_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


class Feature(BaseModel):
    supported: bool
    detail: str = ""
    seconds: float = 0.0


class Probe(BaseModel):
    base_url: str
    model: str
    answers: bool
    models: list[str] = Field(default_factory=list)
    detail: str = ""
    features: dict[str, Feature] = Field(default_factory=dict)  # tool_call, json_mode, json_schema


def _feature(got: Any, usage: Any, *, tool: str | None, shape: str | None) -> Feature:
    if isinstance(got, Fallback):
        return Feature(supported=False, detail=f"{got.reason.value}: {got.detail}"[:200], seconds=usage.seconds)
    parsed = json_answer(got, tool=tool)
    if isinstance(parsed, Fallback):
        return Feature(supported=False, detail=parsed.detail, seconds=usage.seconds)
    obj, how = parsed
    ok = isinstance(obj.get("ok"), bool) and (shape is None or how == shape)
    return Feature(supported=ok, detail=f"answered as {how}: {obj}"[:200], seconds=usage.seconds)


def probe(*, base_url: str, model: str, api_key: str | None, cfg: LlmConfig) -> Probe:
    """Probe ``base_url`` with ``model``; never raises for what the endpoint does."""
    client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=cfg.timeout, max_retries=0)
    out = Probe(base_url=base_url, model=model, answers=False)
    t0 = time.perf_counter()
    try:
        out.models = [m.id for m in client.with_options(timeout=min(cfg.timeout, 10.0)).models.list()]
        out.answers = True
    except openai.APIError as exc:
        out.detail = f"{type(exc).__name__} listing models ({time.perf_counter() - t0:.1f} s)"
        return out
    ask = [{"role": "user", "content": 'Reply with the JSON {"ok": true}.'}]
    got, usage = call(client, cfg, model=model, messages=ask, max_tokens=24, tools=[PING_TOOL],
                      tool_choice={"type": "function", "function": {"name": "ping"}})
    out.features["tool_call"] = _feature(got, usage, tool="ping", shape="tool_call")
    got, usage = call(client, cfg, model=model, messages=ask, max_tokens=24, response_format={"type": "json_object"})
    out.features["json_mode"] = _feature(got, usage, tool=None, shape=None)
    fmt = ({"type": "json_object", "schema": PING_SCHEMA} if cfg.response_format == "json_object_schema" else
           {"type": "json_schema", "json_schema": {"name": "ping", "schema": PING_SCHEMA}})
    got, usage = call(client, cfg, model=model, messages=ask, max_tokens=24, response_format=fmt)
    out.features["json_schema"] = _feature(got, usage, tool=None, shape=None)
    return out


__all__ = ["Feature", "Probe", "probe"]
