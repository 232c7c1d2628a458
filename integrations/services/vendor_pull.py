"""Use case of the pull connectors: read a vendor log from where the last poll stopped, ingest each page (in
shadow, as pushed records are) and persist the cursor after it.

A restart neither skips nor repeats: the cursor moves only after its page is stored, and a page read again
after a crash between the two is recognised record by record (the vendor event id is the idempotency key).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from pydantic import BaseModel

from integrations.ingest.pull import LogSource, SourceUnavailable
from integrations.services.deps import ServiceDeps
from integrations.services.vendor_ingest import ingest_records
from risk.store.vendor import IngestCursorRow


class PollResult(BaseModel):
    connector: str
    pages: int
    received: int
    created: int
    duplicates: int
    rejected: int
    cursor: dict[str, Any] | None
    error: str | None = None  # the vendor API failed; the cursor stayed after the last page taken
    rejections: list[str] = []


def load_cursor(deps: ServiceDeps, name: str) -> dict[str, Any] | None:
    with deps.sessions() as s:
        row = s.get(IngestCursorRow, name)
        return dict(row.cursor) if row else None


def poll_once(*, deps: ServiceDeps, source: LogSource, lock: AbstractContextManager[Any] | None = None,
              max_pages: int = 1000) -> PollResult:
    """Read ``source`` from its stored cursor until it is caught up (or ``max_pages``), storing as it goes.

    Args:
        deps: the service dependencies.
        source: an Okta or Graph log source (integrations.ingest.okta_pull / entra_pull).
        lock: the service's write lock, held around each page's writes.
        max_pages: a bound on one poll, so one call never runs unbounded.
    """
    cursor = load_cursor(deps, source.name)
    out = PollResult(connector=source.name, pages=0, received=0, created=0, duplicates=0, rejected=0, cursor=cursor)
    try:
        for page in source.pages(cursor):
            res = ingest_records(deps=deps, vendor=source.vendor, records=page.records, lock=lock)
            with deps.sessions.begin() as s:
                row = s.get(IngestCursorRow, source.name, with_for_update=True)
                now = int(deps.clock().timestamp() * 1000)
                if row is None:
                    s.add(IngestCursorRow(connector=source.name, cursor=page.cursor, updated_ms=now))
                else:
                    row.cursor, row.updated_ms = page.cursor, now
            out.pages += 1
            out.received += res.received
            out.created += res.created
            out.duplicates += res.duplicates
            out.rejected += res.rejected
            out.rejections += [f"{i.vendor_event_id or i.index}: " + "; ".join(f"{e.field}: {e.message}"
                                                                                 for e in i.errors)
                               for i in res.items if i.status == "rejected"]
            out.cursor = page.cursor
            if out.pages >= max_pages:
                break
    except SourceUnavailable as exc:
        out.error = exc.reason
    return out
