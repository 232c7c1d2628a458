"""The end of a time-boxed exception in a vendor IAM is an action too: run by the same adapter, exactly once,
audited, retried while the vendor is away, and counted as overdue until it is done.

Each due expiry runs in its own transaction under its row's lock (a write first, as the proposal executor
does): the vendor call and the ``done`` record commit together. A process that dies after the vendor removed
the membership and before that commit leaves the expiry pending; the next run's call reads the membership
back, finds it gone and records ``already_applied`` without a second removal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.iam_attempts import record_attempt
from agent.iam_types import IamAdapter, IamRequest, IamStatus
from risk.audit import AuditKind, Ledger
from risk.store.control import IamExpiryRow

log = logging.getLogger("glassgate.iam.expiry")


class ExpiryOutcome(BaseModel):
    proposal_id: str
    status: IamStatus
    retry_at: datetime | None = None
    error: str | None = None


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def due_expiries(s: Session, *, now: datetime) -> list[str]:
    """Pending expiries whose window has ended and whose next attempt is due, oldest first."""
    t = _ms(now)
    return list(s.scalars(select(IamExpiryRow.proposal_id).where(
        IamExpiryRow.status == "pending", IamExpiryRow.due_ms <= t,
        or_(IamExpiryRow.next_attempt_ms.is_(None), IamExpiryRow.next_attempt_ms <= t)).order_by(IamExpiryRow.due_ms)))


def overdue_count(s: Session, *, now: datetime) -> int:
    """Exceptions past their end that the vendor still has to remove (the ``/metrics`` gauge)."""
    return int(s.scalar(select(func.count()).select_from(IamExpiryRow).where(
        IamExpiryRow.status == "pending", IamExpiryRow.due_ms <= _ms(now))) or 0)


def run_due_expiries(sessions: sessionmaker[Session], *, adapter: IamAdapter, ledger: Ledger,
                     clock: Callable[[], datetime],
                     after_call: Callable[[str], None] | None = None) -> list[ExpiryOutcome]:
    """Remove every due exception through ``adapter``; the outcome of each one attempted. An expiry recorded
    by another adapter than the configured one is left pending (and stays visible as overdue).
    ``after_call(key)`` runs after the vendor removed one and before its record commits (a test hook)."""
    with sessions() as s:
        due = due_expiries(s, now=clock())
    out: list[ExpiryOutcome] = []
    for pid in due:
        with sessions.begin() as s:
            s.execute(update(IamExpiryRow).where(IamExpiryRow.proposal_id == pid)
                      .values(attempts=IamExpiryRow.attempts))  # the row lock (SQLite: the writer lock) first
            row = s.scalars(select(IamExpiryRow).where(IamExpiryRow.proposal_id == pid)
                            .execution_options(populate_existing=True)).one()
            now = clock()
            if row.status != "pending" or pid not in due_expiries(s, now=now):
                continue  # done by a concurrent run
            if row.adapter != adapter.name:
                log.error("exception of %s was granted in %s, but the configured IAM is %s: not removed", pid,
                          row.adapter, adapter.name)
                continue
            req = IamRequest.model_validate(row.request)
            res = adapter.execute(req, now=now)
            if after_call is not None and res.status is IamStatus.APPLIED:
                after_call(req.idempotency_key)
            row.attempts += 1
            detail = {**res.detail, **({"error": res.error} if res.error else {})}
            record_attempt(s, key=req.idempotency_key, proposal_id=pid, adapter=adapter.name,
                           action=req.action.value, status=res.status.value, detail=detail, now=now, ledger=ledger,
                           retry_at=res.retry_at)
            if res.status is IamStatus.TRANSIENT:
                row.next_attempt_ms = None if res.retry_at is None else _ms(res.retry_at)
            else:
                row.status = "done" if res.done else "failed"
                row.done_ms, row.next_attempt_ms, row.result = _ms(now), None, {"status": res.status.value, **detail}
                ledger.append(s, kind=AuditKind.ACTION, subject_id=pid, at=now, payload={
                    "proposal_id": pid, "key": req.idempotency_key, "kind": req.action.value, "adapter": adapter.name,
                    "status": res.status.value, "result": detail, "attempts": row.attempts,
                    "due_at": datetime.fromtimestamp(row.due_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
            out.append(ExpiryOutcome(proposal_id=pid, status=res.status, retry_at=res.retry_at, error=res.error))
    return out
