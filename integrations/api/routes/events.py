"""POST /v1/events and /v1/events:batch: the `glassgate score` contract over HTTP, over
``integrations.services.decisions.ingest`` (which shares an engine chunk between concurrent requests)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from integrations.api.deps import BatchBody, EventBody, Ingester
from integrations.api.errors import FieldProblem, ProblemError, invalid, problem_responses, self_contained
from integrations.services.decisions import ingest
from risk.engine import IdempotencyConflict, Rejected, ScoreResult
from risk.events import AccessEvent, EventValidationError

router = APIRouter(tags=["events"])

MAX_BATCH = 1000

_EVENT_BODY = {"requestBody": {"required": True, "description": "One native access event (see DESIGN.md).",
                               "content": {"application/json": {
                                   "schema": self_contained(AccessEvent.model_json_schema())}}}}
# An item is not refused with the batch: each is validated on its own and a bad one (of any shape) gets its
# own error in ``results``, so the items are documented as events but not constrained here.
_BATCH_BODY = {"requestBody": {"required": True, "description": f"Up to {MAX_BATCH} native access events.",
                               "content": {"application/json": {"schema": {
                                   "type": "object", "required": ["events"], "additionalProperties": False,
                                   "properties": {"events": {"type": "array", "maxItems": MAX_BATCH, "items": {
                                       "description": "A native access event, as for POST /v1/events; "
                                                      "validated on its own (see results)."}}}}}}}}


def _score(request: Request, raws: list[Any]) -> list[ScoreResult | Rejected]:
    """Decide in order, sharing an engine chunk with concurrent requests (see GroupCommit)."""
    return ingest(deps=request.app.state.services, group=request.app.state.group_commit, raws=raws)


def _result(res: ScoreResult) -> dict[str, Any]:
    return {"decision": res.decision, "explanation": res.explanation}


class FastJSONResponse(Response):
    """JSON by orjson. The decisions and explanations are JSON-ready already; FastAPI's own encoding of a
    returned dict walks every value again (48 ms for a 100-event batch's answer, against 1 ms here)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _rejection(rej: Rejected) -> ProblemError:
    err = rej.error
    if isinstance(err, EventValidationError):
        return invalid([FieldProblem(field=e.field, message=e.message) for e in err.errors], detail=str(err))
    assert isinstance(err, IdempotencyConflict)
    return ProblemError(409, str(err), slug="idempotency-conflict", title="Event id already used",
                        errors=[{"field": "event_id", "message": "already decided for a different event body"}],
                        extra={"decision_id": err.decision_id})


@router.post("/v1/events", status_code=201, openapi_extra=_EVENT_BODY,
             responses={200: {"description": "The same event was decided before; its first decision."},
                        **problem_responses(400, 401, 403, 409, 413, 422)})
def post_event(request: Request, principal: Ingester, raw: EventBody) -> FastJSONResponse:
    """Decide one access event: 201 with the decision and its explanation; 200 with the first decision
    when the identical event was decided before; 409 when its event_id was used for a different event."""
    (res,) = _score(request, [raw])
    if isinstance(res, Rejected):
        raise _rejection(res)
    return FastJSONResponse(_result(res), status_code=201 if res.created else 200)


@router.post("/v1/events:batch", openapi_extra=_BATCH_BODY, responses=problem_responses(400, 401, 403, 413, 422))
def post_events_batch(request: Request, principal: Ingester, raw: BatchBody) -> FastJSONResponse:
    """Decide up to 1,000 events in order: one result per item, a decision (with ``created``) or an
    ``error`` naming the bad fields (nothing is stored for such an item)."""
    if not isinstance(raw, dict):
        raise invalid([{"field": "(body)", "message": 'must be a JSON object {"events": [...]}'}])
    unknown = sorted(set(raw) - {"events"})
    problems = [{"field": k, "message": "unknown field"} for k in unknown]
    events = raw.get("events")
    if "events" not in raw:
        problems.append({"field": "events", "message": "required"})
    elif not isinstance(events, list):
        problems.append({"field": "events", "message": "must be a list of events"})
    elif len(events) > MAX_BATCH:
        problems.append({"field": "events", "message": f"at most {MAX_BATCH} events per batch, got {len(events)}"})
    if problems:
        raise invalid(problems)
    assert isinstance(events, list)
    results: list[dict[str, Any]] = []
    for i, res in enumerate(_score(request, events) if events else []):
        if isinstance(res, Rejected):
            p = _rejection(res)
            results.append({"index": i, "status": p.status,
                            "error": {"fields": [e.field for e in p.errors or []], "message": p.detail,
                                      "details": [e.model_dump() for e in p.errors or []]}})
        else:
            results.append({"index": i, "status": 201 if res.created else 200, **_result(res),
                            "created": res.created})
    return FastJSONResponse({"results": results})
