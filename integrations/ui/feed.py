"""The live feed: a filtered, paged table of decisions, counts over the last hour and day, and a stream of
server-sent events carrying each new matching decision as a rendered table row.

The stream polls the store by arrival cursor (``seq``), so decisions stored by any process serving the
same database appear; ``Last-Event-ID`` (sent by the browser when it reconnects) resumes after the last
row it received.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from integrations.services import dashboard
from integrations.ui.auth import User
from integrations.ui.views import deps, env, render

router = APIRouter(prefix="/ui", include_in_schema=False)

POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
COUNTS_TTL = 10.0
STREAM_SECONDS = 300.0  # then the browser reconnects with Last-Event-ID: no stream lives forever
FILTER_KEYS = ("outcome", "user", "resource", "tier", "family", "since", "until")


def _filters(request: Request) -> tuple[dashboard.FeedFilter, list[str]]:
    """The feed filter from the query string; bad values are named (and ignored) rather than failing the page."""
    raw = {k: v.strip() for k in FILTER_KEYS if (v := request.query_params.get(k)) and v.strip()}
    for k in ("since", "until"):
        if k in raw and len(raw[k]) == 16:  # <input type="datetime-local"> sends no seconds and no offset
            raw[k] += ":00Z"
    try:
        return dashboard.FeedFilter.model_validate(raw), []
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors()}
        problems = [f"{k}: {e['msg']}" for e in exc.errors() for k in [str(e["loc"][0])]]
        return dashboard.FeedFilter.model_validate({k: v for k, v in raw.items() if k not in bad}), problems


def _query(f: dashboard.FeedFilter) -> dict[str, str]:
    out = {}
    for k, v in f.model_dump(exclude_none=True).items():
        out[k] = v.strftime("%Y-%m-%dT%H:%M") if isinstance(v, datetime) else str(v)
    return out


@router.get("")
def feed(request: Request, user: User, before: Annotated[int | None, Query(ge=1)] = None) -> Response:
    f, problems = _filters(request)
    d = deps(request)
    page = dashboard.feed_page(deps=d, filters=f, before=before)
    return render(request, "feed.html", user=user, page=page, filters=_query(f), problems=problems, before=before)


@router.get("/feed/counts")
def counts(request: Request, user: User) -> Response:
    """The small charts (the feed page loads them after itself and refreshes them every 30 s). A reading
    younger than ``COUNTS_TTL`` seconds is reused: many analysts' pages then cost one pass over the day."""
    state = request.app.state
    now = time.monotonic()
    cached = getattr(state, "ui_counts", None)
    if cached is None or now - cached[0] > COUNTS_TTL:
        cached = state.ui_counts = (now, dashboard.counts(deps=deps(request)))
    hour, day = cached[1]
    return render(request, "_counts.html", user=user, hour=hour, day=day)


def _event(row: dashboard.FeedRow) -> str:
    html = env.get_template("_row.html").render(row=row, fresh=True)
    data = "".join(f"data: {line}\n" for line in html.splitlines() if line.strip())
    return f"id: {row.seq}\nevent: decision\n{data}\n"


@router.get("/feed/stream")
async def stream(request: Request, user: User, after: Annotated[int | None, Query(ge=0)] = None) -> Response:
    """New decisions matching the page's filters, as ``event: decision`` (one ``<tr>`` each)."""
    f, _ = _filters(request)
    d = deps(request)
    last_id = request.headers.get("last-event-id", "")
    given = int(last_id) if last_id.isdigit() else after
    cursor: int = given if given is not None else await run_in_threadpool(dashboard.newest_seq, d)
    loop = asyncio.get_running_loop()

    async def events() -> AsyncIterator[str]:
        nonlocal cursor
        yield "retry: 2000\n: connected\n\n"
        started = idle = loop.time()
        while loop.time() - started < STREAM_SECONDS and not await request.is_disconnected():
            rows: list[Any] = await run_in_threadpool(functools.partial(dashboard.feed_after, deps=d, filters=f,
                                                                         after=cursor))
            for row in rows:
                cursor = row.seq
                yield _event(row)
            if rows:
                idle = loop.time()
            elif loop.time() - idle > HEARTBEAT_SECONDS:
                idle = loop.time()
                yield ": heartbeat\n\n"
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})
