"""Tables of the service: durable background jobs, inbound deliveries (webhooks, Slack) recorded for
idempotency, and ticket enrichments written back by the built-in ticketing adapter.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from risk.store.base import Base, JSONType


class JobRow(Base):
    """A durable unit of background work. ``(kind, key)`` is its idempotency key: enqueueing the same
    key twice gives the first job. A worker claims a job by setting ``locked_by``/``locked_until``;
    a claim that outlives ``locked_until`` (the worker died) may be taken over."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after_ms: Mapped[int] = mapped_column(BigInteger)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_until_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
                      Index("ix_jobs_status_run_after", "status", "run_after_ms"))


class DeliveryRow(Base):
    """One inbound delivery, by its sender's id (a webhook-id, a Jira delivery, a Slack event id).
    The primary key makes a retried delivery a no-op."""

    __tablename__ = "inbound_deliveries"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class EnrichmentRow(Base):
    """The narrative written for a ticket, and where it was posted."""

    __tablename__ = "ticket_enrichments"

    ticket_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # generic | jira
    delivery_id: Mapped[str] = mapped_column(String(200))
    decision_ids: Mapped[list[str]] = mapped_column(JSONType)
    narrative: Mapped[dict[str, Any]] = mapped_column(JSONType)
    posted_to: Mapped[str] = mapped_column(String(32))  # builtin | jira
    external_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
