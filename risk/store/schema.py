"""Tables of the decision core. Migrations are generated from this metadata (Alembic)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from risk.store.base import Base, JSONType


class DecisionRow(Base):
    __tablename__ = "decisions"

    decision_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    event_hash: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(128), index=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    resource_id: Mapped[str] = mapped_column(String(128), index=True)
    resource_kind: Mapped[str] = mapped_column(String(32))
    sensitivity: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[str] = mapped_column(String(40))
    ts_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)  # arrival order, for stable ordering
    risk: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    threshold_outcome: Mapped[str] = mapped_column(String(16))
    rule_floor: Mapped[str] = mapped_column(String(16))
    policy_id: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    threshold_scope: Mapped[str] = mapped_column(String(64))
    threshold_section: Mapped[str] = mapped_column(String(128), server_default="")
    step_up_at: Mapped[float] = mapped_column(Float)
    deny_at: Mapped[float] = mapped_column(Float)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    model_version: Mapped[str] = mapped_column(String(64))
    event: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # An approved exception in force for this user and resource (cited), or None.
    exception: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)

    __table_args__ = (Index("ix_decisions_user_ts", "user_id", "ts_ms"), Index("ix_decisions_scope", "policy_id", "threshold_scope"),
                      # the dashboard (migration 0010): feed pages by arrival per filter; counts by event time
                      Index("ix_decisions_outcome_seq", "outcome", "seq"),
                      Index("ix_decisions_sensitivity_seq", "sensitivity", "seq"),
                      Index("ix_decisions_resource_seq", "resource_id", "seq"),
                      Index("ix_decisions_user_seq", "user_id", "seq"),
                      Index("ix_decisions_ts_outcome", "ts_ms", "outcome", "decision_id"))


class ExplanationRow(Base):
    __tablename__ = "explanations"

    decision_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    top_family: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    contributions: Mapped[list[float]] = mapped_column(JSONType)  # log-odds, catalog order
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)

    # the dashboard (migration 0010): the family of a decision without reading its explanation's body
    __table_args__ = (Index("ix_explanations_family", "decision_id", "top_family"),)


class ProfileRow(Base):
    __tablename__ = "user_profiles"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class SessionRow(Base):
    __tablename__ = "sessions"

    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    first_ms: Mapped[int] = mapped_column(BigInteger)
    last_ms: Mapped[int] = mapped_column(BigInteger)


class VerdictRow(Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(String(64), index=True)
    verdict: Mapped[str] = mapped_column(String(16))  # malicious | benign
    attack_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    analyst: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[str] = mapped_column(String(40))
    # the id of the same analyst's later verdict on the same decision; None while it is the current one
    superseded_by: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (Index("ix_verdicts_decision_analyst", "decision_id", "analyst"),)


class CounterRow(Base):
    """Monotonic counters (arrival sequence of decisions)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ModelVersionRow(Base):
    """Every model version the store has known: live (exactly one once any is registered), shadow, or retired."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # live | shadow | retired
    card: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    proposal_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the promotion that made it live
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the live version it replaced


class ShadowScoreRow(Base):
    """A shadow model's score and explanation summary for one decision (it never decides)."""

    __tablename__ = "shadow_scores"

    decision_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    risk: Mapped[float] = mapped_column(Float)
    threshold_outcome: Mapped[str] = mapped_column(String(16))
    top_family: Mapped[str] = mapped_column(String(16))
    top_drivers: Mapped[list[str]] = mapped_column(JSONType)
