"""Tables of the control loop: proposals and their approvals, executed actions, and the
state the built-in decision point enforces (exceptions, revoked sessions, policy versions).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from risk.store.base import Base, JSONType


class ProposalRow(Base):
    __tablename__ = "proposals"

    proposal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType)
    thread_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    decided_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


class ApprovalRow(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    proposal_id: Mapped[str] = mapped_column(String(64), index=True)
    principal: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    channel: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    # the roles the approver held when deciding; the executor re-derives entitlement from them (None: not counted)
    roles: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)

    __table_args__ = (UniqueConstraint("proposal_id", "principal", name="uq_approvals_proposal_principal"),)


class ExecutionRow(Base):
    """One row per executed proposal: the primary key is the idempotency key of the action."""

    __tablename__ = "executions"

    proposal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    adapter: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # applied | failed
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)
    at_ms: Mapped[int] = mapped_column(BigInteger)


class ExceptionRow(Base):
    __tablename__ = "access_exceptions"

    exception_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    resource_id: Mapped[str] = mapped_column(String(128))
    starts_ms: Mapped[int] = mapped_column(BigInteger)
    ends_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    proposal_id: Mapped[str] = mapped_column(String(64))
    policy_id: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[int] = mapped_column(Integer)
    section: Mapped[str] = mapped_column(String(128))

    __table_args__ = (Index("ix_access_exceptions_user_resource", "user_id", "resource_id"),)


class RevocationRow(Base):
    __tablename__ = "session_revocations"

    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    revoked_ms: Mapped[int] = mapped_column(BigInteger)
    proposal_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class PolicyVersionRow(Base):
    """An approved policy version; the engine uses the highest version of each policy."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    proposal_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("policy_id", "version", name="uq_policy_versions_policy_version"),)


# --- IAM adapters (issue 12): every attempt at a vendor, and the exceptions a vendor must end at expiry


class IamAttemptRow(Base):
    """One call of a vendor IAM adapter for one action (key: the proposal id, or ``<id>:end``), whatever its
    outcome; the latest transient one holds when the next attempt is due."""

    __tablename__ = "iam_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(80), index=True)
    proposal_id: Mapped[str] = mapped_column(String(64))
    adapter: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # applied | already_applied | transient | failed
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    next_attempt_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class IamExpiryRow(Base):
    """An exception granted in a vendor IAM, to be removed there when its window ends (exactly once)."""

    __tablename__ = "iam_expiries"

    proposal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    adapter: Mapped[str] = mapped_column(String(32))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the END_EXCEPTION IamRequest
    due_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    done_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)

    __table_args__ = (Index("ix_iam_expiries_status_due", "status", "due_ms"),)
