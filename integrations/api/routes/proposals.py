"""Proposals over HTTP: list, read, approve and reject. Deciding goes through
``integrations.actions.decide_proposal`` with ``Channel.API``: the approval rules of the exception-process
policy decide who may approve what (the requester never may), whatever the token's roles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from agent.approval import ApprovalError, Channel, Principal, Refusal, Status
from agent.proposals import list_proposals, record
from integrations.actions import decide_proposal, expire
from integrations.api.deps import SMALL_MAX_BYTES, ProposalDecider, Reader, SmallBody, parse_json, read_limited
from integrations.api.errors import ProblemError, from_validation, invalid, problem_responses
from integrations.runtime import Runtime
from risk.store.control import ProposalRow

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


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _body(model: type[BaseModel], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(from_validation(exc)) from None


def _decide(request: Request, proposal_id: str, principal: Principal, *, approve: bool,
            reason: str | None) -> dict[str, Any]:
    rt = _rt(request)
    with request.app.state.write_lock:
        try:
            return decide_proposal(rt, proposal_id=proposal_id, principal=principal, approve=approve,
                                   channel=Channel.API, reason=reason)
        except ApprovalError as exc:
            verb = "approval" if approve else "rejection"
            raise ProblemError(REFUSAL_STATUS[exc.reason], str(exc), slug=f"approval-{exc.reason.value.replace('_', '-')}",
                               title=f"The {verb} was refused",
                               extra={"reason": exc.reason.value, "proposal_id": proposal_id}) from None


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
    rt = _rt(request)
    with request.app.state.write_lock:
        expire(rt)
    with rt.sessions() as s:
        recs = list_proposals(s, rules=rt.approval_rules, status=status, limit=limit)
    return {"proposals": [r.model_dump(mode="json") for r in recs]}


@router.get("/v1/proposals/{proposal_id}", responses=problem_responses(401, 403, 404))
def read_one(proposal_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    """One proposal: its payload, the evidence behind it, its approvals and, once applied, the result."""
    rt = _rt(request)
    with request.app.state.write_lock:
        expire(rt)
    with rt.sessions() as s:
        row = s.get(ProposalRow, proposal_id)
        if row is None:
            raise ProblemError(404, f"no proposal {proposal_id!r}", extra={"kind": "proposal"})
        return record(s, row, rt.approval_rules).model_dump(mode="json")


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
