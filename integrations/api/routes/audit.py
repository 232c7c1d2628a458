"""The audit ledger over HTTP: a paginated export as JSON lines, and verification (the same
``Ledger.verify`` as `glassgate audit verify`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from integrations.api.deps import Reader
from integrations.api.errors import problem_responses
from integrations.services import audit as service
from risk.audit import AuditEntryOut, VerifyReport

router = APIRouter(tags=["audit"])

NDJSON = "application/x-ndjson"
# Characters that many readers (Python's splitlines, JavaScript before ES2019) take as line breaks; inside
# JSON they can only occur in strings, where the escaped form means the same.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"})


def _one_line(text: str) -> str:
    return text.translate(_LINE_BREAKS)
MAX_PAGE = 1000
NEXT_HEADER = "X-Next-After-Seq"
MAX_SEQ = 2**63 - 1  # the column is a signed 64-bit integer

_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "One audit entry per line, in sequence order. When more entries follow, the "
                         f"``{NEXT_HEADER}`` header holds the next page's ``after_seq`` and ``Link`` its URL "
                         '(rel="next"); the last page has neither.',
          "content": {NDJSON: {"schema": AuditEntryOut.model_json_schema()}},
          "headers": {NEXT_HEADER: {"schema": {"type": "integer"}, "description": "after_seq of the next page."},
                      "Link": {"schema": {"type": "string"}, "description": 'The next page, rel="next".'}}},
    **problem_responses(401, 403, 422),
}


@router.get("/v1/audit", response_class=Response, responses=_EXPORT_RESPONSES)
def export(
    request: Request, principal: Reader,
    after_seq: Annotated[int, Query(ge=-1, le=MAX_SEQ, description="Entries after this sequence number (-1: from the start).")]
    = -1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many entries.")] = 100,
) -> Response:
    """Export the audit ledger as JSON lines, oldest first, a page at a time; each entry carries its
    ``prev_hash`` and ``leaf_hash`` so the chain can be checked outside glassgate."""
    got = service.export_page(deps=request.app.state.services, after_seq=after_seq, limit=limit)
    headers = {}
    if got.next_after_seq is not None:
        # from the configured public base URL, never the Host header (which the client chooses)
        headers = {NEXT_HEADER: str(got.next_after_seq), "Link": f'<{got.next_url}>; rel="next"'}
    body = "".join(_one_line(e.model_dump_json()) + "\n" for e in got.entries)
    return Response(content=body, media_type=NDJSON, headers=headers)


@router.get("/v1/audit/verify", response_model=VerifyReport, responses=problem_responses(401, 403))
def verify(request: Request, principal: Reader) -> VerifyReport:
    """Recompute every entry's leaf hash, the hash chain, the head row and the witness: ``ok`` with the
    size and Merkle root, or the first bad entry's ``first_bad_seq`` and the ``problem``. A failed
    verification is still a 200: the report is the answer."""
    return service.verify(deps=request.app.state.services)
