"""Vendor sign-in logs pushed to glassgate: ``POST /v1/ingest/{okta,entra,ocsf}`` (JSON, a JSON array, NDJSON,
or the vendor's delivery envelope). Each record is scored in shadow and stored beside the vendor's decision.

Okta Event Hooks authenticate with the Authorization header configured on the hook (compared in constant
time) and are verified once with ``GET /v1/ingest/okta`` echoing ``X-Okta-Verification-Challenge``; Entra and
OCSF deliveries are signed with Standard Webhooks headers (the service's verifier).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from integrations.api.deps import BATCH_MAX_BYTES, read_limited
from integrations.api.errors import ProblemError, invalid, problem_responses
from integrations.ingest import Vendor
from integrations.ingest.records import BadBody, iter_records, unwrap
from integrations.services.deps import ServiceDeps
from integrations.services.vendor_ingest import IngestResult, ingest_records
from integrations.webhooks import Unauthenticated, verify_standard

router = APIRouter(tags=["ingest"])

_BODY = {"requestBody": {"required": True, "description": "Vendor records: one JSON object, a JSON array, NDJSON, "
                         "or the vendor's envelope (Okta Event Hook data.events, Azure Monitor records, Graph value).",
                         "content": {"application/json": {"schema": {}}, "application/x-ndjson": {"schema": {}}}}}


def _unauthenticated(detail: str, realm: str) -> ProblemError:
    return ProblemError(401, detail, slug="bad-signature", title="Delivery not authenticated",
                        headers={"WWW-Authenticate": f'{realm} realm="glassgate-ingest"'})


def _check_okta(request: Request) -> None:
    expected = request.app.state.runtime.settings.okta_hook_authorization
    if not expected:
        raise ProblemError(404, "Okta Event Hook ingestion is not configured: set GLASSGATE_OKTA_HOOK_AUTHORIZATION to "
                                "the Authorization header value of the hook")
    got = request.headers.get("authorization")
    if got is None:
        raise _unauthenticated("missing Authorization header: send the value configured on the Okta Event Hook",
                               "Okta")
    if not hmac.compare_digest(got.encode(), expected.encode()):
        raise _unauthenticated("the Authorization header is not the one configured for the Okta Event Hook", "Okta")


@router.get("/v1/ingest/okta", responses=problem_responses(400, 401, 404))
def verify_okta_hook(request: Request) -> dict[str, str]:
    """Okta Event Hook one-time verification: echo ``X-Okta-Verification-Challenge`` as ``{"verification"}``."""
    _check_okta(request)
    challenge = request.headers.get("x-okta-verification-challenge")
    if not challenge:
        raise ProblemError(400, "missing X-Okta-Verification-Challenge header")
    return {"verification": challenge}


def _records(body: bytes, vendor: Vendor) -> list[Any]:
    if not body.strip():
        raise ProblemError(400, "the body is empty; send vendor records as JSON or NDJSON", slug="malformed-json",
                           title="Malformed JSON")
    try:
        return unwrap(vendor.value, list(iter_records(body)))
    except BadBody as exc:
        raise ProblemError(400, f"the body is {exc}", slug="malformed-json", title="Malformed JSON") from None


def _answer(result: IngestResult) -> JSONResponse:
    if result.received and result.rejected == result.received:
        single = result.received == 1
        problems = [{"field": e.field if single else f"[{i.index}].{e.field}", "message": e.message}
                    for i in result.items for e in i.errors]
        raise invalid(problems, detail=f"no {result.vendor.value} record could be mapped; nothing was stored: "
                      + "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5]))
    return JSONResponse(result.model_dump(mode="json", exclude_none=True),
                        status_code=201 if result.created else 200)


async def _ingest(request: Request, vendor: Vendor, body: bytes) -> JSONResponse:
    records = _records(body, vendor)
    app = request.app
    deps = ServiceDeps.from_runtime(app.state.runtime)
    result = await run_in_threadpool(lambda: ingest_records(deps=deps, vendor=vendor, records=records,
                                                            lock=app.state.write_lock))
    return _answer(result)


@router.post("/v1/ingest/okta", openapi_extra=_BODY, responses=problem_responses(400, 401, 404, 413, 422))
async def ingest_okta(request: Request) -> JSONResponse:
    """Okta System Log events (an Event Hook delivery or plain events): 201 when any was new, 200 when all
    were seen before; per record its shadow decision and agreement, or the Okta fields that are wrong."""
    _check_okta(request)
    return await _ingest(request, Vendor.OKTA, await read_limited(request, BATCH_MAX_BYTES))


async def _signed(request: Request, vendor: Vendor) -> JSONResponse:
    secrets = request.app.state.runtime.settings.ingest_secret_list
    if not secrets:
        raise ProblemError(404, f"{vendor.value} ingestion is not configured: set GLASSGATE_INGEST_WEBHOOK_SECRETS (or "
                                "GLASSGATE_WEBHOOK_SECRETS) to whsec_ secrets")
    body = await read_limited(request, BATCH_MAX_BYTES)
    try:
        verify_standard(request.headers, body, secrets=secrets, now_s=time.time())
    except Unauthenticated as exc:
        raise _unauthenticated(exc.reason, "Signature") from None
    return await _ingest(request, vendor, body)


@router.post("/v1/ingest/entra", openapi_extra=_BODY, responses=problem_responses(400, 401, 404, 413, 422))
async def ingest_entra(request: Request) -> JSONResponse:
    """Entra sign-ins (Graph signIn objects, a Graph page, or Azure Monitor records), Standard Webhooks signed."""
    return await _signed(request, Vendor.ENTRA)


@router.post("/v1/ingest/ocsf", openapi_extra=_BODY, responses=problem_responses(400, 401, 404, 413, 422))
async def ingest_ocsf(request: Request) -> JSONResponse:
    """OCSF 1.x Authentication (3002) events, Standard Webhooks signed."""
    return await _signed(request, Vendor.OCSF)


@router.api_route("/v1/ingest/okta", methods=["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"], include_in_schema=False)
def okta_other_methods() -> None:
    """One path, two operations (the hook's GET verification and its POST deliveries): a 405 names both,
    which the router alone would not (it answers with the first partial match's methods)."""
    raise ProblemError(405, "use GET (Okta's one-time verification) or POST (deliveries)", headers={"Allow": "GET, POST"})
