"""What a narrative is: text for an audience, the structured claims behind it, and its citations.

The evidence is everything the tools returned for one question; a narrative may state
only what the evidence holds (the grounding rule), which :mod:`agent.verifier` checks.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class Audience(StrEnum):
    ANALYST = "analyst"
    TICKET = "ticket"
    AUDITOR = "auditor"


class Intent(StrEnum):
    WHY_DECISION = "why_decision"
    SESSION_CHANGE = "session_change"
    WHAT_IF = "what_if"
    POLICY_LOOKUP = "policy_lookup"
    TUNING = "tuning"
    UNSUPPORTED = "unsupported"


class Citation(BaseModel):
    policy_id: str
    version: int
    section: str
    heading: str = ""
    text: str = ""


ClaimType = Literal["outcome", "risk", "threshold", "driver", "rule", "policy", "change", "counterfactual",
                    "what_if", "tuning", "exception", "uncertainty", "scope", "vendor", "agreement"]


class Claim(BaseModel):
    """One checkable statement. ``subject`` is the decision, session or policy it is about."""

    type: ClaimType
    subject: str
    feature: str | None = None
    direction: Literal["+", "-"] | None = None
    value: float | str | None = None
    points: float | None = None
    citation: Citation | None = None


class Evidence(BaseModel):
    """Facts gathered by tools for one question (tool outputs as JSON)."""

    intent: Intent
    question: str
    decision: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    timeline: dict[str, Any] | None = None
    what_if: dict[str, Any] | None = None
    tuning: dict[str, Any] | None = None
    matches: list[dict[str, Any]] = Field(default_factory=list)  # other decisions found
    citations: list[Citation] = Field(default_factory=list)  # retrieved passages only
    note: str | None = None  # why the evidence is thin or missing
    observed: dict[str, Any] | None = None  # the vendor's own decision, for an event ingested from Okta/Entra/OCSF
    # the outcome the question asked about when the decision found has another one ("why was X blocked?"
    # about a step-up): the decision found is explained, and the narrative says so first
    asked_outcome: str | None = None

    def decision_ids(self) -> list[str]:
        ids = [self.decision["decision_id"]] if self.decision else []
        if self.timeline:
            ids += [s["decision_id"] for s in self.timeline["steps"]]
        return list(dict.fromkeys(ids + [m["decision_id"] for m in self.matches]))


class Narrative(BaseModel):
    audience: Audience
    text: str
    claims: list[Claim]
    citations: list[Citation]
    narrator: str


class VerificationFailure(BaseModel):
    check: str
    detail: str


class Verification(BaseModel):
    verified: bool
    failures: list[VerificationFailure] = Field(default_factory=list)
