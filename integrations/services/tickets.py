"""Ticket deliveries and their enrichment: record a verified delivery once and queue its job; read the result.

A delivery is recorded under every key that identifies it (:func:`delivery_keys`); a delivery matching any
recorded key is a duplicate and gets the first one's job. For Jira the identifier header is not signed, so
it is never a key: the signed body's hash is, and so are the issue key and the event time, so one signed
body sent under four identifiers makes one enrichment. Jira events older than the retention window
(GLASSGATE_JIRA_REPLAY_WINDOW_SECONDS) are refused, so a replay can never outlive the records that catch it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from integrations.jobs import enqueue, wall_ms
from integrations.services.deps import ServiceDeps
from integrations.webhooks import SignatureScheme, Ticket, Unauthenticated
from risk.store.service import DeliveryRow, EnrichmentRow, JobRow

KIND = "enrich_ticket"
MAX_EVENT_MS = 10**14  # far beyond any real epoch milliseconds: a bound before any arithmetic


class Recorded(BaseModel):
    job_id: int
    status: str
    duplicate: bool
    delivery_id: str


class DeliveryConflict(Exception):
    """The same delivery is being recorded concurrently by another process; the caller may retry."""


def delivery_keys(*, deps: ServiceDeps, scheme: SignatureScheme, delivery_id: str, body: bytes, ticket: Ticket,
                  raw: Any, now_ms: int) -> list[str]:
    """The keys that identify a delivery, the first being its delivery id.

    Raises:
        Unauthenticated: a Jira event time outside the retention window (stale, or in the future).
    """
    if scheme is not SignatureScheme.JIRA:
        return [delivery_id]
    keys = ["sha256:" + hashlib.sha256(body).hexdigest()]
    ts = raw.get("timestamp") if isinstance(raw, dict) else None
    if isinstance(ts, int) and not isinstance(ts, bool):
        window_ms = deps.settings.jira_replay_window_seconds * 1000
        if not 0 < ts < MAX_EVENT_MS or ts < now_ms - window_ms or ts > now_ms + window_ms:
            raise Unauthenticated(f"the Jira event time is outside the {deps.settings.jira_replay_window_seconds} s "
                                  "retention window; a stale or replayed delivery is refused")
        keys.append(f"issue:{ticket.id}@{ts}")
    return keys


def record_delivery(*, deps: ServiceDeps, channel: str, keys: list[str], payload: dict[str, Any]) -> Recorded:
    """Record the delivery under ``keys`` and enqueue its job in one transaction (or find the first one's).

    Raises:
        DeliveryConflict: a concurrent first delivery of the same key kept winning.
    """
    for _ in range(3):  # a concurrent first delivery of the same key (another process) wins; then read it
        try:
            with deps.write_lock, deps.sessions.begin() as s:
                seen = s.scalars(select(DeliveryRow).where(DeliveryRow.channel == channel,
                                                           DeliveryRow.delivery_id.in_(keys))).first()
                if seen is not None:
                    job = s.get(JobRow, seen.job_id) if seen.job_id is not None else None
                    return Recorded(job_id=seen.job_id or 0, status=job.status if job else "unknown", duplicate=True,
                                    delivery_id=seen.delivery_id)
                now = wall_ms()
                job, _ = enqueue(s, kind=KIND, key=f"{channel}:{keys[0]}", payload=payload, now_ms=now)
                for k in keys:
                    s.add(DeliveryRow(channel=channel, delivery_id=k, received_ms=now, job_id=job.id))
                return Recorded(job_id=job.id, status=job.status, duplicate=False, delivery_id=keys[0])
        except IntegrityError:
            continue
    raise DeliveryConflict(keys[0])


class EnrichmentState(BaseModel):
    """The enrichment written for a ticket, or (``enrichment`` None) the job on its way, if any."""

    enrichment: dict[str, Any] | None
    job: dict[str, Any] | None


def read_enrichment(*, deps: ServiceDeps, ticket_id: str) -> EnrichmentState:
    with deps.sessions() as s:
        row = s.get(EnrichmentRow, ticket_id)
        if row is not None:
            return EnrichmentState(enrichment={
                "ticket_id": row.ticket_id, "source": row.source, "delivery_id": row.delivery_id,
                "decision_ids": row.decision_ids, "narrative": row.narrative, "posted_to": row.posted_to,
                "external_ref": row.external_ref, "created_ms": row.created_ms}, job=None)
        # not enriched yet: is a job on its way? (jobs are keyed by delivery, so look among the unfinished ones)
        pending = s.scalars(select(JobRow).where(JobRow.kind == KIND, JobRow.status != "done")
                            .order_by(JobRow.id.desc()).limit(500))
        for job in pending:
            if (job.payload.get("ticket") or {}).get("id") == ticket_id:
                return EnrichmentState(enrichment=None, job={"job_id": job.id, "job_status": job.status,
                                                             "attempts": job.attempts, "last_error": job.last_error})
    return EnrichmentState(enrichment=None, job=None)
