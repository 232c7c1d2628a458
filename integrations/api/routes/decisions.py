"""Decisions, session timelines and verdicts. Reads go through the tool registry (the same tools the
agent and Slack use); a verdict is recorded by ``integrations.services.verdicts.record_verdict``, as
`glassgate verdict` does (analysts and policy owners only; history kept; audited)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from integrations.api.deps import Reader, SmallBody, ToolsDep, VerdictAuthor
from integrations.api.errors import ProblemError, from_validation, invalid, problem_responses
from integrations.services.verdicts import VerdictRefusal, record_verdict
from risk.policy import Outcome
from tools.registry import ToolInputError, ToolNotFound, call_tool

router = APIRouter(tags=["decisions"])

MAX_PAGE = 100
TOOL_MAX = 200  # find_decisions' own limit
MAX_SKIP = TOOL_MAX - MAX_PAGE - 1  # decisions of one millisecond a cursor can step over
MAX_CURSOR_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z, the last instant a datetime holds


# ----------------------------------------------------------------------------- helpers

_ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_only(value: Any) -> Any:
    # pydantic alone would also take "0.5" or "1700000000" as Unix time; the document promises ISO 8601
    if isinstance(value, str) and not _ISO_DATE_TIME.match(value):
        raise ValueError("not an ISO 8601 date-time with an offset, e.g. 2026-11-29T10:32:00Z")
    return value


# An ISO 8601 instant with an offset (a naive one cannot be compared with the stored, offset-aware times)
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


def _tool(ctx: Any, name: str, args: dict[str, Any], *, field_names: dict[str, str] | None = None) -> Any:
    """Call a tool; its refusals become 404/422 problems (tool field names mapped back to the API's)."""
    try:
        return call_tool(ctx, name, args)
    except ToolNotFound as exc:
        raise ProblemError(404, f"no {exc.kind} {exc.key!r}", extra={"kind": exc.kind}) from None
    except ToolInputError as exc:
        names = field_names or {}
        raise invalid([{"field": names.get(p.field, p.field), "message": p.message} for p in exc.problems]) from None


def _ts_ms(timestamp: str) -> int:
    return round(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def _encode_cursor(until_ms: int, skip: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"u": until_ms, "k": skip}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        if len(cursor) > 200:
            raise ValueError
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        until_ms, skip = raw["u"], raw["k"]
        # bounded before any arithmetic: an instant datetime can represent, a skip this API could issue
        if not (type(until_ms) is int and type(skip) is int and 0 <= until_ms <= MAX_CURSOR_MS
                and 0 <= skip <= MAX_SKIP):
            raise ValueError
        return until_ms, skip
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid([{"field": "cursor", "message": "not a cursor this API issued"}]) from None


# ----------------------------------------------------------------------------- routes

@router.get("/v1/decisions", responses=problem_responses(401, 403, 422))
def list_decisions(
    principal: Reader, tools: ToolsDep,
    user: Annotated[str | None, Query(description="Only this user's decisions.")] = None,
    resource: Annotated[str | None, Query(description="Only decisions on this resource.")] = None,
    outcome: Annotated[Outcome | None, Query(description="allow, step_up or deny.")] = None,
    since: Annotated[Instant | None, Query(description="At or after this instant (ISO 8601 with offset).")] = None,
    until: Annotated[Instant | None, Query(description="Before this instant (ISO 8601 with offset).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """Decisions newest first, filtered; page with ``limit`` and the ``next_cursor`` of the previous page."""
    names = {"user_id": "user", "resource_id": "resource"}
    base = {"user_id": user, "resource_id": resource, "outcome": outcome.value if outcome else None,
            "since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
    base = {k: v for k, v in base.items() if v is not None}
    args, skip, cursor_ms = dict(base), 0, None
    if cursor is not None:
        # keyset paging on (time, order within the same millisecond): the next page ends at the last page's
        # final millisecond, and the decisions of that millisecond already shown are skipped
        cursor_ms, skip = _decode_cursor(cursor)
        bound = datetime.fromtimestamp((cursor_ms + 1) / 1000, UTC)
        if since is not None and since >= bound:
            return {"total": _tool(tools, "find_decisions", {**base, "limit": 1}, field_names=names).total,
                    "decisions": [], "next_cursor": None}
        if until is None or bound < until:
            args["until"] = bound.isoformat()
    page = _tool(tools, "find_decisions", {**args, "limit": limit + 1 + skip}, field_names=names)
    rows = page.decisions[skip:]
    items = rows[:limit]
    total = page.total if cursor is None else _tool(tools, "find_decisions", {**base, "limit": 1},
                                                    field_names=names).total
    next_cursor = None
    if len(rows) > limit:
        last_ms = _ts_ms(items[-1].timestamp)
        shown = sum(1 for d in items if _ts_ms(d.timestamp) == last_ms) + (skip if last_ms == cursor_ms else 0)
        if shown > MAX_SKIP:
            raise ProblemError(422, f"more than {MAX_SKIP} decisions share the instant {items[-1].timestamp}; narrow "
                                    "the time filter (since/until) to page through them",
                               errors=[{"field": "limit", "message": "too many decisions at one instant to page"}])
        next_cursor = _encode_cursor(last_ms, shown)
    return {"total": total, "decisions": [d.model_dump(mode="json") for d in items], "next_cursor": next_cursor}


@router.get("/v1/decisions/{decision_id}", responses=problem_responses(401, 403, 404, 422))
def read_decision(decision_id: str, principal: Reader, tools: ToolsDep) -> dict[str, Any]:
    """One decision in full: the decision record, its explanation, the event and analyst verdicts."""
    return _tool(tools, "get_decision", {"decision_id": decision_id}).model_dump(mode="json")


@router.get("/v1/sessions/{session_id}/timeline", responses=problem_responses(401, 403, 404, 422))
def read_timeline(session_id: str, principal: Reader, tools: ToolsDep) -> dict[str, Any]:
    """What changed in a session, decision by decision."""
    return _tool(tools, "session_timeline", {"session_id": session_id}).model_dump(mode="json")


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["malicious", "benign"]
    attack_type: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None


@router.post("/v1/decisions/{decision_id}/verdict", status_code=201,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": VerdictIn.model_json_schema()}}}},
             responses=problem_responses(400, 401, 403, 404, 413, 422))
def post_verdict(decision_id: str, request: Request, principal: VerdictAuthor, raw: SmallBody) -> dict[str, Any]:
    """Record the calling analyst's current verdict on a decision (it feeds threshold replay); audited. Only
    analysts and policy owners may; a later verdict by the same analyst supersedes theirs (history is kept)."""
    try:
        body = VerdictIn.model_validate(raw)
    except ValidationError as exc:
        raise invalid(from_validation(exc)) from None
    got = record_verdict(deps=request.app.state.services, principal=principal, decision_id=decision_id,
                         verdict=body.verdict, attack_type=body.attack_type, note=body.note)
    if got.refusal is VerdictRefusal.NOT_FOUND:
        raise ProblemError(404, got.message or "", extra={"kind": "decision"})
    if got.refusal is not None:
        raise ProblemError(403, got.message or "", extra={"reason": got.refusal.value})
    return {"decision_id": decision_id, "verdict": got.verdict, "attack_type": got.attack_type,
            "analyst": got.analyst, "note": got.note, "at": got.at, "audit_seq": got.audit_seq,
            "verdict_id": got.verdict_id, "supersedes": got.superseded}
