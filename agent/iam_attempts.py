"""The record of every call of a vendor IAM adapter, and when the next one is due.

An attempt is keyed by its action (the proposal id, or ``<proposal id>:end`` for the removal of an exception
at its expiry). A transient outcome (rate limit, 5xx, timeout) stores the next attempt time the vendor asked
for (Retry-After, X-Rate-Limit-Reset) or the adapter's own backoff; without one the action is due at the next
sweep. The executor and the expiry runner skip an action until that time. Each transient attempt is audited on
its own; the final one is audited with the action's outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from risk.audit import AuditKind, Ledger
from risk.store.control import IamAttemptRow

BACKOFF_BASE_S = 30.0  # without a time from the vendor: 30 s, 2 min, 8 min, ... capped at an hour
BACKOFF_CAP_S = 3600.0


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attempts_so_far(s: Session, key: str) -> int:
    return int(s.scalar(select(func.count()).select_from(IamAttemptRow).where(IamAttemptRow.key == key)) or 0)


def not_due_until(s: Session, key: str, now: datetime) -> datetime | None:
    """When the action ``key`` may be tried again, if that is still in the future; else None (due now)."""
    last = s.scalars(select(IamAttemptRow).where(IamAttemptRow.key == key).order_by(IamAttemptRow.id.desc())
                     .limit(1)).first()
    if last is None or last.status != "transient" or last.next_attempt_ms is None:
        return None
    return datetime.fromtimestamp(last.next_attempt_ms / 1000, UTC) if last.next_attempt_ms > _ms(now) else None


def backoff(attempts: int) -> timedelta:
    """The wait after ``attempts`` transient failures when the vendor named no time."""
    return timedelta(seconds=min(BACKOFF_CAP_S, BACKOFF_BASE_S * 4 ** max(0, attempts - 1)))


def record_attempt(s: Session, *, key: str, proposal_id: str, adapter: str, action: str, status: str,
                   detail: dict[str, Any], now: datetime, ledger: Ledger | None = None,
                   retry_at: datetime | None = None) -> IamAttemptRow:
    """Record one attempt in ``s`` (the caller's transaction). A transient one gets its next attempt time
    (``retry_at``, never before ``now``; none: due at once) and, with ``ledger``, an audit entry of its own."""
    n = attempts_so_far(s, key) + 1
    nxt = max(retry_at, now) if status == "transient" and retry_at is not None else None
    row = IamAttemptRow(key=key, proposal_id=proposal_id, adapter=adapter, action=action, status=status,
                        detail=detail, at_ms=_ms(now), next_attempt_ms=None if nxt is None else _ms(nxt))
    s.add(row)
    s.flush()
    if ledger is not None and status == "transient":
        ledger.append(s, kind=AuditKind.ACTION, subject_id=proposal_id, at=now, payload={
            "proposal_id": proposal_id, "key": key, "adapter": adapter, "action": action, "attempt": n,
            "status": status, "detail": detail, "next_attempt_at": _iso(nxt)})
    return row
