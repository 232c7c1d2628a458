"""Proposals over HTTP: list, read, approve and reject. Deciding is the one approval function,
``integrations.services.proposals.decide`` with ``Channel.API``: the approval rules of the exception-process
policy decide who may approve what (the requester never may), whatever the token's roles. No lock is held
here: the service holds the write lock only around its own short transactions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from agent.approval import Channel, Principal, Refusal, Status
from integrations.api.deps import SMALL_MAX_BYTES, ProposalDecider, Reader, SmallBody, parse_json, read_limited
from integrations.api.errors import ProblemError, from_validation, invalid, problem_responses
from integrations.services import proposals as service
from integrations.services.deps import ServiceDeps

router = APIRouter(tags=["proposals"])

MAX_PAGE = 100


def _non_blank(value: str) -> str:
    # stripped after the length check, so the limit is on what was sent, as the document says
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_non_blank)]

# refusal -> HTTP status: who you are (403), what the proposal is now (409), or that it does not exist (404)
REFUSAL_STATUS: dict[Refusal, int] = {
    Refusal.NOT_FOUND: 404,
    Refusal.NOT_ENTITLED: 403, Refusal.SELF_APPROVAL: 403, Refusal.CHANNEL_NOT_ALLOWED: 403,
    Refusal.UNKNOWN_PRINCIPAL: 403,
    Refusal.NOT_PENDING: 409, Refusal.ALREADY_DECIDED: 409, Refusal.EXPIRED: 409,
}


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


async def _optional_body(request: Request) -> Any:
    """The JSON body, or ``{}`` when there is none (an approval needs no reason); size-limited."""
    data = await read_limited(request, SMALL_MAX_BYTES)
    return {} if not data.strip() else parse_json(data)


OptionalSmallBody = Annotated[Any, Depends(_optional_body)]


def _deps(request: Request) -> ServiceDeps:
    deps: ServiceDeps = request.app.state.services
    return deps


def _body(model: type[BaseModel], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(from_validation(exc)) from None


def _decide(request: Request, proposal_id: str, principal: Principal, *, approve: bool,
            reason: str | None) -> dict[str, Any]:
    got = service.decide(deps=_deps(request), proposal_id=proposal_id, principal=principal, approve=approve,
                         channel=Channel.API, reason=reason)
    if got.outcome is service.Outcome.REFUSED:
        assert got.refusal is not None
        verb = "approval" if approve else "rejection"
        raise ProblemError(REFUSAL_STATUS[got.refusal], got.message or got.refusal.value,
                           slug=f"approval-{got.refusal.value.replace('_', '-')}", title=f"The {verb} was refused",
                           extra={"reason": got.refusal.value, "proposal_id": proposal_id})
    assert got.proposal is not None
    return got.proposal.model_dump(mode="json")


def _decision_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": model is RejectIn, "content": {"application/json": {
        "schema": model.model_json_schema()}}}}


@router.get("/v1/proposals", responses=problem_responses(401, 403, 422))
def list_all(
    request: Request, principal: Reader,
    status: Annotated[Status | None, Query(description="Only proposals in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Proposals newest first, with their approvals and status (pending ones past their expiry are
    expired first, as the CLI does)."""
    recs = service.list_proposals(deps=_deps(request), status=status, limit=limit)
    return {"proposals": [r.model_dump(mode="json") for r in recs]}


@router.get("/v1/proposals/{proposal_id}", responses=problem_responses(401, 403, 404))
def read_one(proposal_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    """One proposal: its payload, the evidence behind it, its approvals and, once applied, the result."""
    deps = _deps(request)
    service.expire(deps=deps)
    rec = service.read_proposal(deps=deps, proposal_id=proposal_id)
    if rec is None:
        raise ProblemError(404, f"no proposal {proposal_id!r}", extra={"kind": "proposal"})
    return rec.model_dump(mode="json")


@router.post("/v1/proposals/{proposal_id}/approve", openapi_extra=_decision_body(ApproveIn),
             responses=problem_responses(400, 401, 403, 404, 409, 413, 422))
def approve(proposal_id: str, request: Request, principal: ProposalDecider, raw: OptionalSmallBody) -> dict[str, Any]:
    """Approve as the calling principal; the action runs once the approvals it needs are in. Refusals
    (403 not entitled, self-approval or wrong channel; 409 not pending, expired or already decided) carry
    ``reason`` and cite the policy in ``detail``; nothing changes then."""
    body: ApproveIn = _body(ApproveIn, raw)
    return _decide(request, proposal_id, principal, approve=True, reason=body.reason)


@router.post("/v1/proposals/{proposal_id}/reject", openapi_extra=_decision_body(RejectIn),
             responses=problem_responses(400, 401, 403, 404, 409, 413, 422))
def reject(proposal_id: str, request: Request, principal: ProposalDecider, raw: SmallBody) -> dict[str, Any]:
    """Reject as the calling principal, with a reason; refused under the same rules as an approval."""
    body: RejectIn = _body(RejectIn, raw)
    return _decide(request, proposal_id, principal, approve=False, reason=body.reason)
