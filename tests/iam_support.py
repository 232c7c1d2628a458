"""Shared by the IAM adapter tests: a store on the test's database, approval rules, a movable clock, and
helpers to approve a proposal and run the executor and the expiry runner as the service does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.approval import ApprovalRules, Channel, Kind, KindRule, Principal, Role
from agent.iam import BuiltinIam
from agent.iam_bridge import VendorIam
from agent.iam_expiry import overdue_count, run_due_expiries
from agent.proposals import ProposalRecord, create, decide, execute_approved
from risk.audit import AuditEntry, Ledger
from risk.policy import PolicySet
from risk.store.control import ExecutionRow, IamAttemptRow, IamExpiryRow, ProposalRow
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.store.schema import DecisionRow

ANA = Principal("ana", frozenset({Role.ANALYST}))
BOB = Principal("bob", frozenset({Role.POLICY_OWNER}))
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def rules() -> ApprovalRules:
    return ApprovalRules(policy_id="POL-EXC-007", policy_version=1, default_expiry_minutes=60, kinds={
        Kind.CONFIRM_DENIAL: KindRule(frozenset({Role.ANALYST, Role.POLICY_OWNER}), 1, None, frozenset(), None),
        Kind.GRANT_EXCEPTION: KindRule(frozenset({Role.POLICY_OWNER}), 1, 72.0, frozenset(), "3-exceptions"),
        Kind.REVOKE_SESSION: KindRule(frozenset({Role.ANALYST, Role.POLICY_OWNER}), 1, None, frozenset(), None),
        Kind.CHANGE_THRESHOLD: KindRule(frozenset({Role.POLICY_OWNER}), 2, None, frozenset(), None)})


class Clock:
    def __init__(self, t: datetime = T0):
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


class Wall:
    """Seconds since the epoch for the adapters' retry waits: moves only when the adapter sleeps."""

    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Store:
    url: str
    db: Engine
    sessions: sessionmaker[Session]
    ledger: Ledger
    clock: Clock
    policy: PolicySet
    rules: ApprovalRules

    def reopen(self) -> Store:
        """A new engine and session factory over the same database: a process restart."""
        self.db.dispose()
        db = make_engine(self.url)
        return Store(url=self.url, db=db, sessions=session_factory(db), ledger=Ledger(witness_path=self.ledger.witness_path,
                     clock=self.clock), clock=self.clock, policy=self.policy, rules=self.rules)

    def bridge(self, vendor: Any) -> VendorIam:
        return VendorIam(vendor=vendor, builtin=BuiltinIam(base_policy=self.policy, rules=self.rules))

    def propose_approved(self, kind: Kind, payload: dict[str, Any]) -> str:
        with self.sessions.begin() as s:
            p = create(s, kind=kind, payload=payload, evidence={}, requested_by=ANA.id, rules=self.rules,
                       ledger=self.ledger, clock=self.clock)
        with self.sessions.begin() as s:
            decide(s, proposal_id=p.proposal_id, principal=BOB, approve=True, channel=Channel.API, rules=self.rules,
                   ledger=self.ledger, clock=self.clock)
        return p.proposal_id

    def sweep(self, iam: Any) -> list[ProposalRecord]:
        return execute_approved(self.sessions, iam=iam, ledger=self.ledger, clock=self.clock, rules=self.rules)

    def expire(self, vendor: Any) -> list[Any]:
        return run_due_expiries(self.sessions, adapter=vendor, ledger=self.ledger, clock=self.clock)

    def status(self, pid: str) -> str:
        with self.sessions() as s:
            return s.get_one(ProposalRow, pid).status

    def execution(self, pid: str) -> ExecutionRow | None:
        with self.sessions() as s:
            row = s.get(ExecutionRow, pid)
            if row is not None:
                s.expunge(row)
            return row

    def expiry(self, pid: str) -> IamExpiryRow | None:
        with self.sessions() as s:
            row = s.get(IamExpiryRow, pid)
            if row is not None:
                s.expunge(row)
            return row

    def overdue(self) -> int:
        with self.sessions() as s:
            return overdue_count(s, now=self.clock())

    def attempts(self, key: str) -> list[tuple[str, int | None]]:
        with self.sessions() as s:
            return [(a.status, a.next_attempt_ms) for a in
                    s.scalars(select(IamAttemptRow).where(IamAttemptRow.key == key).order_by(IamAttemptRow.id))]

    def audit(self, pid: str) -> list[dict[str, Any]]:
        with self.sessions() as s:
            return [json.loads(e.payload) for e in s.scalars(select(AuditEntry).where(
                AuditEntry.subject_id == pid, AuditEntry.kind == "action").order_by(AuditEntry.seq))]

    def count(self, table: Any) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(table)) or 0)

    def add_decision(self, *, decision_id: str, session_id: str, user_id: str) -> None:
        with self.sessions.begin() as s:
            s.add(DecisionRow(decision_id=decision_id, event_id="evt-" + decision_id, event_hash="0" * 64,
                              session_id=session_id, user_id=user_id, resource_id="payroll-db",
                              resource_kind="database", sensitivity="restricted", timestamp="2026-11-29T08:00:00Z",
                              ts_ms=int(T0.timestamp() * 1000) - 3_600_000, seq=1, risk=0.9, outcome="deny",
                              threshold_outcome="deny", rule_floor="allow", policy_id="POL-ACCESS-001",
                              policy_version=1, threshold_scope="tier:restricted", step_up_at=0.5, deny_at=0.8,
                              rules=[], model_version="m1", event={}, exception=None))


class CrashBeforeCommit(Exception):
    """Raised by :func:`crash_next_commit`: the process 'died' after the vendor call, before the record."""


def crash_next_commit(sessions: sessionmaker[Session]) -> None:
    """Make the next commit through ``sessions`` fail, as a process killed between the IAM call and the
    commit of its record would (the transaction is rolled back; nothing of it is stored)."""

    def boom(_session: Session) -> None:
        event.remove(sessions, "before_commit", boom)
        raise CrashBeforeCommit("killed after the IAM call, before the commit")

    event.listen(sessions, "before_commit", boom)


def open_store(db_url: str, tmp_path: Path, policy: PolicySet) -> Store:
    db = make_engine(db_url)
    upgrade(db)
    clock = Clock()
    return Store(url=db_url, db=db, sessions=session_factory(db), ledger=Ledger(witness_path=tmp_path / "w.json", clock=clock),
                 clock=clock, policy=policy, rules=rules())
