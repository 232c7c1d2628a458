"""What one call of a planner or narrator returns: the result, and why it fell back if it did.

The LLM classes keep no per-call state: everything a caller needs to report (fallback reason, dropped
plan fields or sentences, token usage, tools used) travels in these values, so one planner and one
narrator can serve concurrent requests.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from agent.narrative import Claim, Narrative
from agent.planner import Plan


class FallbackReason(StrEnum):
    """Why an LLM answer was not used (the deterministic planner or narrator answered instead)."""

    TIMEOUT = "timeout"
    CONTEXT_LENGTH = "context_length"
    UNAVAILABLE = "unavailable"  # connection refused, 5xx, bad key
    TRUNCATED = "truncated"  # the reply hit max_tokens
    UNPARSEABLE = "unparseable"  # no JSON object in a tool call, JSON mode or the content
    SCHEMA_ECHO = "schema_echo"  # the model wrote the JSON schema back instead of an answer
    NO_CLAIMS = "no_claims"  # parsed, but no sentence is tied to a checked claim
    INVALID_PLAN = "invalid_plan"  # the plan does not validate or names nothing usable
    INVENTED_ID = "invented_id"  # a decision or session id that is not in the store
    DROPPED_OUTCOME = "dropped_outcome"  # the question names an outcome the plan left out
    VERIFICATION = "verification"  # the draft parsed but the verifier refused it


class Fallback(BaseModel):
    reason: FallbackReason
    detail: str = ""


class Usage(BaseModel):
    """Tokens and time of one model call: the server's counts when it sends them, else our estimate."""

    prompt_tokens: int | None = None  # the server's usage.prompt_tokens
    completion_tokens: int | None = None
    approx_prompt_tokens: int = 0  # agent.prompts.approx_tokens of what we sent
    seconds: float = 0.0
    shape: str | None = None  # how the answer came: tool_call, json, fenced_json, embedded_json


class PlanResult(BaseModel):
    plan: Plan
    planner: str
    fallback: Fallback | None = None
    dropped: list[str] = Field(default_factory=list)  # plan fields the check removed, as name=value
    usage: Usage | None = None

    def report(self) -> dict[str, object]:
        """What ``ask --json`` and the audit entry show about planning."""
        return {"planner": self.planner, "fallback": self.fallback.model_dump(mode="json") if self.fallback else None,
                "dropped": self.dropped, "usage": self.usage.model_dump(mode="json") if self.usage else None}


class Sentence(BaseModel):
    """One sentence of an LLM draft and the claims it states (the narrator's answer schema)."""

    text: str
    claims: list[Claim] = Field(default_factory=list)


class DroppedSentence(BaseModel):
    text: str
    why: str


class Draft(BaseModel):
    """A narrator's answer before verification: a narrative, or the reason there is none."""

    narrative: Narrative | None = None
    fallback: Fallback | None = None
    dropped: list[DroppedSentence] = Field(default_factory=list)
    usage: Usage | None = None
    tools_used: list[str] = Field(default_factory=list)


__all__ = ["Draft", "DroppedSentence", "Fallback", "FallbackReason", "PlanResult", "Sentence", "Usage"]
