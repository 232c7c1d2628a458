"""POST /v1/events and /v1/events:batch: the `glassgate score` contract over HTTP."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from integrations.api.deps import BatchBody, EventBody, Ingester
from integrations.api.errors import FieldProblem, ProblemError, invalid, problem_responses, self_contained
from risk.engine import DecisionEngine, IdempotencyConflict, Rejected, ScoreResult
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


class GroupCommit:
    """Concurrent requests share one engine chunk (one transaction, one batched explanation) instead of
    queueing for the write lock one by one: each request adds its events to a pending list, then takes
    the write lock; whoever holds it decides everything pending, in arrival order, and hands each request
    its own results. Writes stay serial (SQLite has one writer; the engine allocates sequence numbers and
    profile updates per chunk) and per-user order is arrival order, as before."""

    MAX_EVENTS = 1000

    def __init__(self, write_lock: threading.Lock):
        self._write_lock = write_lock
        self._mutex = threading.Lock()
        self._pending: list[_Slot] = []
        self.batches: Counter[int] = Counter()  # requests per shared chunk (for the record; tests read it)

    def score(self, engine: DecisionEngine, raws: list[Any]) -> list[ScoreResult | Rejected]:
        slot = _Slot(raws)
        with self._mutex:
            self._pending.append(slot)
        with self._write_lock:
            while not slot.done:
                with self._mutex:
                    batch: list[_Slot] = []
                    size = 0
                    while self._pending and (not batch or size + len(self._pending[0].raws) <= self.MAX_EVENTS):
                        size += len(self._pending[0].raws)
                        batch.append(self._pending.pop(0))
                self.batches[len(batch)] += 1
                try:
                    self._decide(engine, batch)
                except Exception as exc:  # noqa: BLE001 - isolate the request that broke the shared chunk
                    if len(batch) == 1:
                        batch[0].error, batch[0].done = exc, True
                        continue
                    # the chunk's transaction rolled back: decide each request alone, so one request's
                    # failure is its own 500 and its neighbours are decided as if it had not been there
                    for b in batch:
                        try:
                            self._decide(engine, [b])
                        except Exception as one:  # noqa: BLE001
                            b.error, b.done = one, True
        if slot.error is not None:
            raise slot.error
        return slot.results

    def _decide(self, engine: DecisionEngine, batch: list[_Slot]) -> None:
        results = list(engine.score_many([r for b in batch for r in b.raws], chunk=self.MAX_EVENTS))
        at = 0
        for b in batch:
            b.results, b.done = results[at: at + len(b.raws)], True
            at += len(b.raws)


class _Slot:
    __slots__ = ("done", "error", "raws", "results")

    def __init__(self, raws: list[Any]):
        self.raws, self.done = raws, False
        self.results: list[ScoreResult | Rejected] = []
        self.error: BaseException | None = None


def _score(request: Request, raws: list[Any]) -> list[ScoreResult | Rejected]:
    """Decide in order, sharing an engine chunk with concurrent requests (see GroupCommit)."""
    group: GroupCommit = request.app.state.group_commit
    return group.score(request.app.state.runtime.engine, raws)


def _result(res: ScoreResult) -> dict[str, Any]:
    return {"decision": res.decision, "explanation": res.explanation}


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
def post_event(request: Request, principal: Ingester, raw: EventBody) -> JSONResponse:
    """Decide one access event: 201 with the decision and its explanation; 200 with the first decision
    when the identical event was decided before; 409 when its event_id was used for a different event."""
    (res,) = _score(request, [raw])
    if isinstance(res, Rejected):
        raise _rejection(res)
    return JSONResponse(_result(res), status_code=201 if res.created else 200)


@router.post("/v1/events:batch", openapi_extra=_BATCH_BODY, responses=problem_responses(400, 401, 403, 413, 422))
def post_events_batch(request: Request, principal: Ingester, raw: BatchBody) -> dict[str, Any]:
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
    return {"results": results}
