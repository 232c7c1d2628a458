"""POST /slack/events: the Slack app (Events API, interactivity and modals on one request URL).

Bolt's own request conversion (``slack_bolt.adapter.starlette.handler``, which the FastAPI adapter's
``SlackRequestHandler`` uses) with one difference: ``App.dispatch`` is synchronous (it verifies the
signature, runs the middleware and waits for the listener's ``ack()``), so it runs on the thread pool
instead of blocking the event loop that serves every other request.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request, Response
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

from integrations.api.deps import read_limited
from integrations.slack.app import build_slack_app

router = APIRouter(tags=["slack"])

BODY_MAX_BYTES = 1024 * 1024  # a view submission carries the whole modal; events are far smaller


@router.post("/slack/events", include_in_schema=False)
async def slack_events(request: Request) -> Response:
    """Verified by Slack's v0 signature (401 otherwise); events are acknowledged at once and answered in
    their thread; buttons and modal submissions are acknowledged within Slack's three seconds."""
    body = await read_limited(request, BODY_MAX_BYTES)
    bolt_resp = await run_in_threadpool(request.app.state.slack_app.dispatch, to_bolt_request(request, body))
    return to_starlette_response(bolt_resp)


def install(app: FastAPI) -> None:
    """Build the bolt app over ``app.state.runtime`` and mount it (only when Slack is configured)."""
    app.state.slack_app = build_slack_app(app.state.runtime, entries=app.state.principal_entries,
                                          deps=app.state.services)
    app.include_router(router)
