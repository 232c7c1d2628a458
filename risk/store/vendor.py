"""Tables for decisions glassgate did not make: what a vendor (Okta, Entra, an OCSF source) decided about an
event glassgate scored in shadow, and where each pull connector has read up to.

An observation hangs off the shadow decision by ``decision_id`` (one per decision); the vendor's own event id
is unique per vendor, so a re-delivered or re-polled event is recognised and changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from risk.store.base import Base, JSONType


class VendorObservationRow(Base):
    __tablename__ = "vendor_observations"

    decision_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor: Mapped[str] = mapped_column(String(16))  # okta | entra | ocsf
    vendor_event_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str] = mapped_column(String(128))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))  # the vendor's: allow | challenge | deny
    failure: Mapped[bool] = mapped_column(default=False)  # a failed credential check (counts towards attempts)
    rule: Mapped[str] = mapped_column(String(300), server_default="")  # the policy or rule that decided
    agreement: Mapped[str] = mapped_column(String(16))  # agree | disagree
    observed: Mapped[dict[str, Any]] = mapped_column(JSONType)
    raw_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("vendor", "vendor_event_id", name="uq_vendor_observations_vendor_event"),
                      Index("ix_vendor_observations_user_ts", "user_id", "ts_ms"),
                      Index("ix_vendor_observations_rule", "vendor", "rule"))


class IngestCursorRow(Base):
    """Where a pull connector has read up to: the vendor's own cursor (an Okta ``after`` link, a Graph
    ``createdDateTime``) and the ids already taken at that instant, so a restart neither skips nor repeats."""

    __tablename__ = "ingest_cursors"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


def observed_for(s: Any, decision_id: str) -> dict[str, Any] | None:
    """The vendor's decision stored beside a shadow decision, or None for glassgate's own decisions."""
    row = s.get(VendorObservationRow, decision_id)
    return None if row is None else dict(row.observed)
