"""The audit ledger's reads: a page of the export, and verification (``Ledger.verify``, as the CLI does).

Thin on purpose: the ledger's internals (tree heads, witness, external sink) live in ``risk.audit``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel

from integrations.services.deps import ServiceDeps
from risk.audit import AuditEntryOut, VerifyReport


class AuditPage(BaseModel):
    """Entries in sequence order; ``next_after_seq`` and ``next_url`` when more follow."""

    entries: list[AuditEntryOut]
    next_after_seq: int | None
    next_url: str | None


def export_page(*, deps: ServiceDeps, after_seq: int, limit: int) -> AuditPage:
    """Up to ``limit`` entries after ``after_seq``. The next page's URL is built from the configured public
    base URL (GLASSGATE_PUBLIC_BASE_URL), never from a request's Host header; without one it is a relative
    reference, which a client resolves against the URL it called."""
    with deps.sessions() as s:
        rows = deps.ledger.entries(s, after_seq=after_seq, limit=limit + 1)
    page = rows[:limit]
    if len(rows) <= limit:
        return AuditPage(entries=page, next_after_seq=None, next_url=None)
    nxt = page[-1].seq
    base = (deps.settings.public_base_url or "").rstrip("/")
    return AuditPage(entries=page, next_after_seq=nxt,
                     next_url=f"{base}/v1/audit?{urlencode({'after_seq': nxt, 'limit': limit})}")


def verify(*, deps: ServiceDeps) -> VerifyReport:
    """Recompute the ledger's hashes, chain, head and witness; the report names the first bad entry."""
    with deps.sessions() as s:
        return deps.ledger.verify(s)
