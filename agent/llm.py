"""The one place that builds the language model: planner and narrator over any OpenAI-compatible endpoint.

With no endpoint configured the offline planner and narrator are used. An LLM only ever proposes
words: a plan is checked against the store and the question (:mod:`agent.plan_check`), and a draft goes
through the same verifier as every other narrative (:meth:`agent.deps.AgentDeps.narrate`). Every call is
bounded (timeout, retries, ``max_tokens``); whatever goes wrong (timeout, context overflow, a reply that
does not parse) comes back as a recorded :class:`~agent.llm_types.Fallback`, never as an exception and
never as the model's raw text. The classes keep no per-call state: results are returned.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import openai

from agent.deps import Narrator, OfflineNarrator, OfflinePlanner, Planner
from agent.llm_parse import json_answer, schema_echo
from agent.llm_types import Draft, Fallback, FallbackReason, PlanResult, Usage
from agent.narrative import Audience, Evidence, Narrative
from agent.plan_check import checked
from agent.planner import Plan
from agent.planner import plan as plan_offline
from agent.prompts import (
    DATA_NOT_INSTRUCTIONS,
    NARRATIVE_SCHEMA,
    PLAN_TOOL,
    narrator_messages,
    planner_messages,
    prompt_tokens,
)
from agent.sentences import claims_of, parse_sentences, tie
from tools.context import ToolContext
from tools.entities import KnownEntitiesOutput
from tools.registry import call_tool

ResponseFormat = Literal["json_object_schema", "json_schema", "json_object"]
CONTEXT_ERROR = re.compile(r"context (?:length|size|window)|exceeds? (?:the )?(?:available )?context|too many tokens",
                           re.IGNORECASE)


class LlmUnavailable(RuntimeError):
    """The model endpoint could not be reached or answered with an error (kept for callers that raise it)."""


@dataclass(frozen=True)
class LlmConfig:
    """How every call is bounded; from settings (GLASSGATE_LLM_*), passed in explicitly.

    ``response_format``: ``json_object_schema`` sends ``{"type": "json_object", "schema": ...}`` (llama.cpp and
    llama-cpp-python turn the schema into a grammar), ``json_schema`` the OpenAI structured-output form,
    ``json_object`` plain JSON mode.
    """

    timeout: float = 60.0
    retries: int = 0  # a local server finishes an abandoned request before the next: a retry only queues more
    plan_max_tokens: int = 200
    narrate_max_tokens: int = 700
    response_format: ResponseFormat = "json_object_schema"
    seed: int = 0
    tool_calls: int = 0  # read-only tool calls the narrator may make for a question outside the planner's kinds


def _error_fallback(exc: openai.APIError) -> Fallback:
    if isinstance(exc, openai.APITimeoutError):
        return Fallback(reason=FallbackReason.TIMEOUT, detail="no reply within the timeout")
    body: Any = getattr(exc, "body", None)
    body = body if isinstance(body, dict) else {}
    err: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else body
    kind = f"{err.get('code', '')} {err.get('type', '')}"
    message = str(err.get("message") or getattr(exc, "message", "") or exc)
    if isinstance(exc, openai.BadRequestError) and ("context_length_exceeded" in kind or "exceed_context_size" in kind
                                                    or CONTEXT_ERROR.search(message)):
        return Fallback(reason=FallbackReason.CONTEXT_LENGTH, detail=message[:300])
    status = getattr(exc, "status_code", None)
    return Fallback(reason=FallbackReason.UNAVAILABLE, detail=f"{type(exc).__name__}"
                    + (f" (HTTP {status})" if status else "") + " from the language model endpoint")


def call(client: openai.OpenAI, cfg: LlmConfig, *, model: str, messages: list[dict[str, Any]], max_tokens: int,
         **kw: Any) -> tuple[Any, Usage] | tuple[Fallback, Usage]:
    """One bounded chat completion: (message, usage), or (fallback, usage) for an error or a cut-off reply."""
    usage = Usage(approx_prompt_tokens=prompt_tokens(messages))
    t0 = time.perf_counter()
    try:
        resp = client.with_options(timeout=cfg.timeout, max_retries=cfg.retries).chat.completions.create(
            model=model, messages=cast(Any, messages), max_tokens=max_tokens, temperature=0, seed=cfg.seed, **kw)
    except openai.APIError as exc:
        usage.seconds = round(time.perf_counter() - t0, 3)
        return _error_fallback(exc), usage
    usage.seconds = round(time.perf_counter() - t0, 3)
    if resp.usage is not None:
        usage.prompt_tokens, usage.completion_tokens = resp.usage.prompt_tokens, resp.usage.completion_tokens
    choice = resp.choices[0] if resp.choices else None
    if choice is None:
        return Fallback(reason=FallbackReason.UNPARSEABLE, detail="the reply has no choices"), usage
    if choice.finish_reason == "length" and not _whole_json(choice.message):
        return Fallback(reason=FallbackReason.TRUNCATED, detail=f"the reply reached max_tokens ({max_tokens})"), usage
    # A grammar-constrained server (llama.cpp) may close the JSON and then pad with whitespace up to max_tokens:
    # a reply whose JSON is whole is an answer, whatever stopped the generation after it.
    return choice.message, usage


def _whole_json(message: Any) -> bool:
    """Whether the message is one complete JSON object (a tool call's arguments or the whole content), not
    an object found inside cut-off text."""
    got = json_answer(message)
    return not isinstance(got, Fallback) and got[1] in ("tool_call", "json")


class LlmPlanner:
    """Classifies a question with a forced ``make_plan`` tool call; anything it invents is dropped."""

    def __init__(self, client: openai.OpenAI, model: str, cfg: LlmConfig | None = None):
        self.client, self.model, self.name, self.cfg = client, model, f"llm:{model}", cfg or LlmConfig()
        self.tool = PLAN_TOOL

    def plan(self, question: str, *, ctx: ToolContext) -> PlanResult:
        """The model's plan, checked; the offline plan, with the reason, when it gives none usable."""
        known = cast(KnownEntitiesOutput, call_tool(ctx, "known_entities", {}))
        users, resources = set(known.users), set(known.resources)
        messages = planner_messages(question, users=sorted(users), resources=sorted(resources))
        got, usage = call(self.client, self.cfg, model=self.model, messages=messages,
                          max_tokens=self.cfg.plan_max_tokens, tools=[self.tool],
                          tool_choice={"type": "function", "function": {"name": "make_plan"}})
        dropped: list[str] = []
        if not isinstance(got, Fallback):
            parsed = json_answer(got, tool="make_plan")
            if isinstance(parsed, Fallback):
                got = parsed
            else:
                usage.shape = parsed[1]
                got = self._validated(parsed[0])
        if isinstance(got, Plan):
            got = checked(got, question, ctx, users=users, resources=resources, dropped=dropped)
        if isinstance(got, Fallback):
            return PlanResult(plan=plan_offline(question, users=users, resources=resources), planner="offline",
                              fallback=got, dropped=dropped, usage=usage)
        return PlanResult(plan=got, planner=self.name, dropped=dropped, usage=usage)

    def explore(self, question: str, *, ctx: ToolContext) -> Any:
        """For a question outside the planner's kinds: the facts the model looks up with read-only tools
        (an :class:`agent.llm_tools.Exploration`), or None when tool use is off (``tool_calls`` 0)."""
        if self.cfg.tool_calls <= 0:
            return None
        from agent.llm_tools import explore

        return explore(self.client, self.cfg, model=self.model, question=question, ctx=ctx,
                       max_calls=self.cfg.tool_calls)

    @staticmethod
    def _validated(obj: dict[str, Any]) -> Plan | Fallback:
        from pydantic import ValidationError

        echo = schema_echo(obj)
        if echo:
            return Fallback(reason=FallbackReason.SCHEMA_ECHO, detail=echo)
        # small models write "" or "null" for a field they leave out
        clean = {k: v for k, v in obj.items() if not (isinstance(v, str) and v.strip().lower() in ("", "null", "none"))}
        try:
            return Plan.model_validate(clean)
        except ValidationError as exc:
            return Fallback(reason=FallbackReason.INVALID_PLAN, detail=f"the plan is invalid: {exc.error_count()} "
                            f"error(s), first at {exc.errors()[0]['loc']}")


class LlmNarrator:
    """Drafts a narrative as sentences tied to claims; the draft is verified by the caller like any other."""

    def __init__(self, client: openai.OpenAI, model: str, cfg: LlmConfig | None = None):
        self.client, self.model, self.name, self.cfg = client, model, f"llm:{model}", cfg or LlmConfig()

    def response_format(self) -> dict[str, Any]:
        if self.cfg.response_format == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "narrative", "schema": NARRATIVE_SCHEMA}}
        if self.cfg.response_format == "json_object_schema":
            return {"type": "json_object", "schema": NARRATIVE_SCHEMA}
        return {"type": "json_object"}

    def draft(self, ev: Evidence, audience: Audience) -> Draft:
        """A draft for ``audience`` (or the reason there is none); never raises on what the model wrote."""
        got, usage = call(self.client, self.cfg, model=self.model, messages=narrator_messages(ev, audience),
                          max_tokens=self.cfg.narrate_max_tokens, response_format=self.response_format())
        if isinstance(got, Fallback):
            return Draft(fallback=got, usage=usage)
        parsed = json_answer(got)
        if isinstance(parsed, Fallback):
            return Draft(fallback=parsed, usage=usage)
        obj, usage.shape = parsed
        read = parse_sentences(obj)
        if isinstance(read, Fallback):
            return Draft(fallback=read, usage=usage)
        sentences, citations = read
        kept, dropped = tie(sentences)
        if not claims_of(kept):
            return Draft(fallback=Fallback(reason=FallbackReason.NO_CLAIMS, detail=f"{len(sentences)} sentence(s), "
                                           "none tied to a claim"), dropped=dropped, usage=usage)
        text = " ".join(s.text.strip() for s in kept)
        return Draft(narrative=Narrative(audience=audience, text=text, claims=claims_of(kept), citations=citations,
                                         narrator=self.name), dropped=dropped, usage=usage)


def build_llm(*, base_url: str | None, model: str | None, api_key: str | None,
              cfg: LlmConfig | None = None) -> tuple[Planner, Narrator]:
    """The planner and narrator for this configuration: offline without ``base_url``, else one shared client.

    Args:
        base_url: an OpenAI-compatible endpoint (``.../v1``), or None for the offline pair.
        model: the model name sent with every request (required with ``base_url``).
        api_key: the bearer key; local servers that need none get a placeholder.
        cfg: timeout, retries, max_tokens and the structured-output form for every call.
    """
    if not base_url:
        return OfflinePlanner(), OfflineNarrator()
    if not model:
        raise ValueError("a model name is required with an LLM base URL")
    cfg = cfg or LlmConfig()
    client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=cfg.timeout,
                           max_retries=cfg.retries)
    return LlmPlanner(client, model, cfg), LlmNarrator(client, model, cfg)


__all__ = ["DATA_NOT_INSTRUCTIONS", "LlmConfig", "LlmNarrator", "LlmPlanner", "LlmUnavailable", "build_llm", "call"]
