"""Ticket webhooks: a signed ticket-created delivery is recorded and answered with 202 at once; the job
worker enriches the ticket later. Recording is ``integrations.services.tickets.record_delivery``: a retried
delivery (the same Standard Webhooks id; for Jira, the same signed body, or the same issue and event time)
answers with the same job and changes nothing. ``GET /v1/tickets/{id}/enrichment`` reads the result
(readers only)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from integrations.api.deps import SMALL_MAX_BYTES, Reader, parse_json, read_limited
from integrations.api.errors import ProblemError, invalid, problem_responses, self_contained
from integrations.jobs import wall_ms
from integrations.principals import ConfigError
from integrations.services import tickets as service
from integrations.webhooks import (
    GenericDelivery,
    JiraDelivery,
    PayloadError,
    SignatureScheme,
    Unauthenticated,
    parse_ticket,
    scheme_of,
    verify_jira,
    verify_standard,
    whsec_key,
)

router = APIRouter(tags=["tickets"])

WEBHOOK_MAX_BYTES = SMALL_MAX_BYTES * 4  # 256 KiB: a Jira issue payload with a long ADF description fits


def _count(request: Request, result: str) -> None:
    with request.app.state.webhook_lock:
        request.app.state.webhook_results[result] += 1


def _refuse(request: Request, exc: Unauthenticated) -> ProblemError:
    _count(request, "unauthenticated")
    return ProblemError(401, exc.reason, slug="bad-signature", title="Delivery not authenticated",
                        headers={"WWW-Authenticate": 'Signature realm="glassgate-webhooks"'})


_DELIVERY_BODY = {"requestBody": {"required": True, "description": "Signed as the headers say; the generic form is "
                                  "strict, Jira's lenient on fields not read here.", "content": {"application/json": {
    "schema": {"anyOf": [self_contained(GenericDelivery.model_json_schema()),
                         self_contained(JiraDelivery.model_json_schema())]}}}}}


@router.post("/v1/webhooks/tickets", status_code=202, openapi_extra=_DELIVERY_BODY,
             responses=problem_responses(400, 401, 413, 422))
async def receive_ticket(request: Request) -> JSONResponse:
    """A ticket-created delivery, signed with Standard Webhooks headers or Jira's ``X-Hub-Signature``; the
    body is glassgate's generic ``{"ticket": {...}}`` or Jira Cloud's ``jira:issue_created`` payload.
    Answers 202 ``{"job_id", "status"}``; a retried delivery (same id) gives the same job."""
    try:
        body = await read_limited(request, WEBHOOK_MAX_BYTES)
    except ProblemError:
        _count(request, "invalid")
        raise
    rt = request.app.state.runtime
    settings = rt.settings
    scheme = scheme_of(request.headers)
    try:
        if scheme is None:
            raise Unauthenticated("the delivery is unsigned: send Standard Webhooks headers (webhook-id, "
                                  "webhook-timestamp, webhook-signature) or Jira's X-Hub-Signature")
        if scheme is SignatureScheme.STANDARD:
            delivery_id = verify_standard(request.headers, body, secrets=settings.webhook_secret_list,
                                          now_s=time.time())
        else:
            delivery_id = verify_jira(request.headers, body, secret=settings.jira_webhook_secret)
    except Unauthenticated as exc:
        raise _refuse(request, exc) from None
    try:
        raw = parse_json(body)
        ticket = parse_ticket(raw)
    except ProblemError:
        _count(request, "invalid")
        raise
    except PayloadError as exc:
        _count(request, "invalid")
        raise invalid(exc.problems) from None
    deps = request.app.state.services
    try:
        keys = service.delivery_keys(deps=deps, scheme=scheme, delivery_id=delivery_id, body=body, ticket=ticket,
                                     raw=raw, now_ms=wall_ms())
    except Unauthenticated as exc:
        raise _refuse(request, exc) from None
    payload = {"ticket": ticket.as_json(), "delivery_id": delivery_id, "channel": scheme.value}
    try:
        got = await run_in_threadpool(service.record_delivery, deps=deps, channel=scheme.value, keys=keys,
                                      payload=payload)
    except service.DeliveryConflict:
        raise ProblemError(409, f"delivery {delivery_id!r} is being recorded concurrently; retry it") from None
    _count(request, "duplicate" if got.duplicate else "accepted")
    worker = request.app.state.job_worker
    if worker is not None and not got.duplicate:
        worker.wake()  # committed: the worker picks it up now rather than at its next poll
    return JSONResponse({"job_id": got.job_id, "status": got.status, "ticket_id": ticket.id,
                         "duplicate": got.duplicate}, status_code=202)


@router.get("/v1/tickets/{ticket_id}/enrichment", responses=problem_responses(401, 403, 404))
def read_enrichment(ticket_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    """The enrichment written for a ticket: the decisions found and their ticket narratives, and where it
    was posted. 404 while it is not written yet, with the job's status when a job for it exists."""
    got = service.read_enrichment(deps=request.app.state.services, ticket_id=ticket_id)
    if got.enrichment is not None:
        return got.enrichment
    if got.job is not None:
        j = got.job
        raise ProblemError(404, f"ticket {ticket_id!r} is not enriched yet: job {j['job_id']} is {j['job_status']}"
                                + (f" ({j['last_error']})" if j["last_error"] else ""),
                           extra={"kind": "enrichment", **j})
    raise ProblemError(404, f"no enrichment for ticket {ticket_id!r}", extra={"kind": "enrichment"})


# ----------------------------------------------------------------------------- wiring (create_app)


def install(app: FastAPI) -> None:
    """Webhook counters for /metrics (``app.state.webhook_results``: a Counter by accepted, duplicate,
    unauthenticated, invalid; increment under ``app.state.webhook_lock``). Refuses to start on a
    ``whsec_`` secret that is not base64. The job worker is started by the app's lifespan."""
    for i, secret in enumerate(app.state.runtime.settings.webhook_secret_list):
        try:
            usable = bool(whsec_key(secret))
        except ValueError:
            usable = False
        if not usable:
            raise ConfigError(f"refusing to start: GLASSGATE_WEBHOOK_SECRETS item {i + 1} is not whsec_ followed by "
                              "a non-empty base64 key")
    app.state.webhook_results = Counter({r: 0 for r in ("accepted", "duplicate", "unauthenticated", "invalid")})
    app.state.webhook_lock = threading.Lock()
    app.state.job_worker = None
