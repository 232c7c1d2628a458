"""The agent over HTTP: a decision's narrative for an audience, and questions to the agent. Both go through
``integrations.services.ask`` (the path the CLI and Slack use), so the same gather, narrator and verifier
answer. No lock is held while a turn waits on a language model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent.narrative import Audience
from integrations.api.deps import Reader, SmallBody
from integrations.api.errors import ProblemError, from_validation, invalid, problem_responses, self_contained
from integrations.services.ask import AskOwnerMismatch, ThreadBusy, ask, explain_decision
from integrations.services.deps import ServiceDeps
from tools.registry import ToolNotFound

router = APIRouter(tags=["agent"])

ThreadId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                                description="Continue this conversation thread (one you started); "
                                            "omit to start a new one.")]


def _non_blank(value: str) -> str:
    # stripped after the length check, so the limit is on what was sent, as the document says
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


class AskIn(BaseModel):
    """A question for the agent. Who asks is the authenticated principal, never a body field."""

    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_non_blank)]
    thread_id: ThreadId | None = None
    audience: Audience = Audience.ANALYST


@router.get("/v1/decisions/{decision_id}/narrative", responses=problem_responses(401, 403, 404, 422))
def read_narrative(
    decision_id: str, request: Request, principal: Reader,
    audience: Annotated[Audience, Query(description="Who the narrative is for: analyst, ticket or auditor.")]
    = Audience.ANALYST,
) -> dict[str, Any]:
    """The decision explained in plain language for ``audience``, with its claims and policy citations,
    checked against the evidence (``verified``; a failed language-model draft is replaced and reported)."""
    deps: ServiceDeps = request.app.state.services
    try:
        return explain_decision(deps=deps, decision_id=decision_id, audience=audience).model_dump(mode="json")
    except ToolNotFound as exc:
        raise ProblemError(404, f"no {exc.kind} {exc.key!r}", extra={"kind": exc.kind}) from None


@router.post("/v1/ask",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": self_contained(AskIn.model_json_schema())}}}},
             responses=problem_responses(400, 401, 403, 409, 413, 422))
def post_ask(request: Request, principal: Reader, raw: SmallBody) -> dict[str, Any]:
    """Ask the agent: a grounded answer with its claims, citations, the decisions it is about, whether it
    passed verification, any proposal it drafted (pending until approved) and the ``thread_id``."""
    try:
        body = AskIn.model_validate(raw)
    except ValidationError as exc:
        raise invalid(from_validation(exc)) from None
    deps: ServiceDeps = request.app.state.services
    try:
        return ask(deps=deps, question=body.question, asked_by=principal.id, audience=body.audience,
                   thread_id=body.thread_id)
    except AskOwnerMismatch:
        # A thread is its asker's: continuing someone else's would restart their thread (and any approval
        # it waits for) under a different name.
        raise ProblemError(403, f"thread {body.thread_id!r} was started by another principal; omit thread_id "
                                "to start your own", errors=[{"field": "thread_id",
                                                             "message": "belongs to another principal"}]) from None
    except ThreadBusy:
        raise ProblemError(409, f"thread {body.thread_id!r} is answering another question right now; retry when "
                                "it is done", slug="thread-busy", title="Thread busy",
                           errors=[{"field": "thread_id", "message": "a turn is in progress"}]) from None
