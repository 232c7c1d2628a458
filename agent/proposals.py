"""Proposals: a persisted state machine, pending -> approved -> applied | failed, pending -> rejected | expired.

Every transition is checked, persisted and audited in one transaction. Approving and executing are two
steps: :func:`decide` records the approval (the last one needed moves the proposal to ``approved``) and the
caller commits it; :func:`execute_approved` then applies approved proposals, each in its own transaction,
locked on the proposal row. The ``executions`` row (primary key: the proposal id) is the idempotency
record: it is written in the transaction that moves the proposal to ``applied`` or ``failed``, so a
proposal is executed at most once, and an approved proposal without one (its process died between the
two steps) is executed by the next sweep. The built-in IAM adapter writes its effect in that same
transaction, which makes it exactly once; an external adapter (which cannot share the transaction) gets
the proposal id as its idempotency key, so a sweep that repeats a call whose result was lost is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.approval import ApprovalError, ApprovalRules, Channel, Kind, Principal, Refusal, Status, check_entitled
from agent.eligibility import Ineligibility, Ineligible, TiersOf, eligibility, tiers
from agent.iam import IamAdapter, IamUnavailable
from agent.iam_attempts import not_due_until, record_attempt
from risk.audit import AuditKind, Ledger
from risk.store.control import ApprovalRow, ExecutionRow, ProposalRow

log = logging.getLogger("glassgate.proposals")

Clock = Callable[[], datetime]
Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$")]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfirmDenial(_Payload):
    decision_id: Ident
    note: Annotated[str, Field(max_length=2000)] = ""


class GrantException(_Payload):
    user_id: Ident
    resource_id: Ident
    duration_hours: Annotated[float, Field(gt=0)]
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


class RevokeSession(_Payload):
    session_id: Ident
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


class ChangeThreshold(_Payload):
    policy_id: Annotated[str, Field(pattern=r"^POL-[A-Z]+-\d{3}$")]
    scope: Annotated[str, Field(pattern=r"^(tier|kind):[a-z_]+$")]
    step_up_at: Annotated[float, Field(ge=0, le=1)]
    deny_at: Annotated[float, Field(ge=0, le=1)]


class PromoteModel(_Payload):
    version: Annotated[str, Field(pattern=r"^rm-[0-9a-f]{12}$")]
    reason: Annotated[str, Field(min_length=3, max_length=2000)]


PAYLOADS: dict[Kind, type[_Payload]] = {Kind.CONFIRM_DENIAL: ConfirmDenial, Kind.GRANT_EXCEPTION: GrantException,
                                        Kind.REVOKE_SESSION: RevokeSession, Kind.CHANGE_THRESHOLD: ChangeThreshold,
                                        Kind.PROMOTE_MODEL: PromoteModel}


class ProposalRecord(BaseModel):
    proposal_id: str
    kind: Kind
    status: Status
    requested_by: str
    payload: dict[str, Any]
    evidence: dict[str, Any]
    thread_id: str | None
    created_at: str
    expires_at: str
    decided_at: str | None
    approvals: list[dict[str, Any]]
    result: dict[str, Any] | None
    approvals_needed: int


class PayloadError(ValueError):
    """A proposal's payload is invalid; ``fields`` names each bad field."""

    def __init__(self, fields: list[str], message: str):
        self.fields = fields
        super().__init__(message)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def validate_payload(kind: Kind, payload: dict[str, Any], rules: ApprovalRules) -> _Payload:
    try:
        p = PAYLOADS[kind].model_validate(payload)
    except ValidationError as exc:
        fields = [".".join(str(x) for x in e["loc"]) for e in exc.errors(include_url=False)]
        raise PayloadError(fields, f"invalid {kind.value} payload: " + "; ".join(
            f"{f}: {e['msg']}" for f, e in zip(fields, exc.errors(include_url=False), strict=True))) from None
    if isinstance(p, GrantException):
        cap = rules.kinds[kind].max_duration_hours
        if cap is not None and p.duration_hours > cap:
            raise PayloadError(["duration_hours"], f"an exception may last at most {cap:g} hours "
                               f"({rules.cite(kind)}); {p.duration_hours:g} requested")
    if isinstance(p, ChangeThreshold) and not p.step_up_at < p.deny_at:
        raise PayloadError(["step_up_at", "deny_at"], "step_up_at must be below deny_at")
    return p


def create(s: Session, *, kind: Kind, payload: dict[str, Any], evidence: dict[str, Any], requested_by: str,
           rules: ApprovalRules, ledger: Ledger, clock: Clock, thread_id: str | None = None) -> ProposalRecord:
    """Record a pending proposal (idempotent on kind, payload, requester and thread)."""
    p = validate_payload(kind, payload, rules)
    body = p.model_dump(mode="json")
    key = json.dumps([kind.value, body, requested_by, thread_id], sort_keys=True)
    pid = "prop-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    existing = s.get(ProposalRow, pid)
    if existing is not None:
        return record(s, existing, rules)
    now = clock()
    row = ProposalRow(proposal_id=pid, kind=kind.value, status=Status.PENDING.value, requested_by=requested_by,
                      payload=body, evidence=evidence, thread_id=thread_id, created_ms=_ms(now),
                      expires_ms=_ms(now) + rules.default_expiry_minutes * 60_000, decided_ms=None, result=None)
    s.add(row)
    s.flush()
    ledger.append(s, kind=AuditKind.PROPOSAL, subject_id=pid, at=now,
                  payload={"proposal_id": pid, "kind": kind.value, "requested_by": requested_by, "payload": body,
                           "thread_id": thread_id, "expires_at": _iso(row.expires_ms)})
    return record(s, row, rules)


def record(s: Session, row: ProposalRow, rules: ApprovalRules) -> ProposalRecord:
    approvals = s.scalars(select(ApprovalRow).where(ApprovalRow.proposal_id == row.proposal_id).order_by(ApprovalRow.id))
    return ProposalRecord(
        proposal_id=row.proposal_id, kind=Kind(row.kind), status=Status(row.status), requested_by=row.requested_by,
        payload=row.payload, evidence=row.evidence, thread_id=row.thread_id, created_at=_iso(row.created_ms) or "",
        expires_at=_iso(row.expires_ms) or "", decided_at=_iso(row.decided_ms), result=row.result,
        approvals=[{"principal": a.principal, "decision": a.decision, "channel": a.channel, "reason": a.reason,
                    "at": _iso(a.at_ms)} for a in approvals],
        approvals_needed=rules.kinds[Kind(row.kind)].approvers)


def _locked(s: Session, proposal_id: str) -> ProposalRow:
    # A write first: it takes SQLite's writer lock before anything is read (a SELECT ... FOR UPDATE is a
    # no-op there) and locks the row on PostgreSQL, so concurrent approvals serialise on the proposal.
    s.execute(update(ProposalRow).where(ProposalRow.proposal_id == proposal_id).values(kind=ProposalRow.kind))
    row = s.scalars(select(ProposalRow).where(ProposalRow.proposal_id == proposal_id)
                    .execution_options(populate_existing=True)).first()
    if row is None:
        raise ApprovalError(Refusal.NOT_FOUND, f"no proposal {proposal_id!r}")
    return row


def expire_due(s: Session, *, ledger: Ledger, clock: Clock) -> int:
    """Mark pending proposals past their expiry as expired (audited). Returns how many."""
    now = clock()
    rows = list(s.scalars(select(ProposalRow).where(ProposalRow.status == Status.PENDING.value,
                                                    ProposalRow.expires_ms < _ms(now)).with_for_update()))
    for row in rows:
        row.status, row.decided_ms = Status.EXPIRED.value, _ms(now)
        ledger.append(s, kind=AuditKind.PROPOSAL, subject_id=row.proposal_id, at=now,
                      payload={"proposal_id": row.proposal_id, "status": Status.EXPIRED.value})
    return len(rows)


def decide(s: Session, *, proposal_id: str, principal: Principal, approve: bool, channel: Channel,
           rules: ApprovalRules, ledger: Ledger, clock: Clock, iam: IamAdapter | None = None,
           reason: str | None = None, tier_of: TiersOf = lambda _p: None,
           principals: Mapping[str, Principal] | None = None, attestation: str | None = None) -> ProposalRecord:
    """Approve or reject as ``principal``; the last needed approval moves the proposal to ``approved``.

    The caller commits, then runs :func:`execute_approved` for the proposal: the approval is durable before
    the IAM adapter is called, and a process that dies in between leaves an ``approved`` proposal that the
    service's sweep executes. Only when ``iam`` is given is the proposal executed here, in the caller's
    transaction (sound only for an adapter whose effect shares it, such as :class:`agent.iam.BuiltinIam`).

    Raises:
        ApprovalError: refused (not found, not pending, expired, self-approval, not entitled,
            already decided, wrong channel); nothing was written.
    """
    now = clock()
    row = _locked(s, proposal_id)
    kind = Kind(row.kind)
    if row.status == Status.EXPIRED.value or (row.status == Status.PENDING.value and row.expires_ms < _ms(now)):
        raise ApprovalError(Refusal.EXPIRED, f"proposal {proposal_id} expired at {_iso(row.expires_ms)}; "
                            "propose it again if it is still needed")
    if row.status != Status.PENDING.value:
        raise ApprovalError(Refusal.NOT_PENDING, f"proposal {proposal_id} is {row.status}, not pending; "
                            "nothing was changed")
    prior = [a.principal for a in s.scalars(select(ApprovalRow).where(ApprovalRow.proposal_id == proposal_id))]
    check_entitled(rules=rules, kind=kind, principal=principal, requested_by=row.requested_by,
                   prior_approvers=prior, channel=channel, tiers=tiers(tier_of(row.payload)))
    s.add(ApprovalRow(proposal_id=proposal_id, principal=principal.id, decision="approve" if approve else "reject",
                      channel=channel.value, reason=reason, at_ms=_ms(now), roles=sorted(principal.roles)))
    ledger.append(s, kind=AuditKind.APPROVAL, subject_id=proposal_id, at=now,
                  payload={"proposal_id": proposal_id, "principal": principal.id, "roles": sorted(principal.roles),
                           "decision": "approve" if approve else "reject", "channel": channel.value, "reason": reason,
                           **({"attestation": attestation} if attestation else {})})
    if not approve:
        row.status, row.decided_ms = Status.REJECTED.value, _ms(now)
    elif len(prior) + 1 >= rules.kinds[kind].approvers:
        row.status, row.decided_ms = Status.APPROVED.value, _ms(now)
        if iam is not None:
            execute(s, row=row, iam=iam, ledger=ledger, clock=clock, rules=rules, principals=principals,
                    tier_of=tier_of)
    s.flush()
    return record(s, row, rules)


def execute(s: Session, *, row: ProposalRow, iam: IamAdapter, ledger: Ledger, clock: Clock, rules: ApprovalRules,
            principals: Mapping[str, Principal] | None = None, tier_of: TiersOf = lambda _p: None) -> bool:
    """Apply an approved proposal through the IAM adapter, at most once (idempotency key: the proposal id).
    Returns whether it was executed (applied, failed or refused) now.

    Eligibility is re-derived from the approval rows first (:func:`agent.eligibility.eligibility`): a status
    of ``approved`` alone is never enough. An ineligible proposal is refused, audited and marked failed with
    the reason, and the adapter is not called."""
    if row.status != Status.APPROVED.value or s.get(ExecutionRow, row.proposal_id) is not None:
        return False
    now = clock()
    if not_due_until(s, row.proposal_id, now) is not None:
        return False  # the IAM system asked us to come back later (a stored next attempt time)
    try:
        eligibility(s, row, rules=rules, now_ms=_ms(now), principals=principals, tier_of=tier_of)
    except Ineligible as refused:
        result: dict[str, Any] = {"error": "not_eligible", "reason": refused.reason.value,
                                  "detail": str(refused)[:500]}
        if refused.reason is Ineligibility.WINDOW_ENDED:
            withdrawn = iam.withdraw(s, row, now=now)
            if withdrawn is not None:
                result["withdrawn"] = withdrawn
        s.add(ExecutionRow(proposal_id=row.proposal_id, adapter=iam.name, status=Status.FAILED.value, result=result,
                           at_ms=_ms(now)))
        row.status, row.result = Status.FAILED.value, result
        log.error("refused to execute proposal %s: %s", row.proposal_id, refused)
        ledger.append(s, kind=AuditKind.ACTION, subject_id=row.proposal_id, at=now,
                      payload={"proposal_id": row.proposal_id, "kind": row.kind, "adapter": iam.name,
                               "status": "refused", "result": result})
        return True
    try:
        result = iam.apply(s, row, now=now)
        status = Status.APPLIED
    except IamUnavailable as exc:
        # transient: nothing applied. The attempt is audited with its next attempt time, in this transaction;
        # the proposal stays approved without an execution, and the sweep tries again when it is due.
        record_attempt(s, key=row.proposal_id, proposal_id=row.proposal_id, adapter=iam.name, action=row.kind,
                       status="transient", detail={"error": str(exc)[:500], **exc.detail}, now=now, ledger=ledger,
                       retry_at=exc.retry_at)
        return False
    except Exception as exc:  # noqa: BLE001 - any adapter failure is recorded on the proposal, never swallowed
        result = {"error": type(exc).__name__, "detail": str(exc)[:500]}
        status = Status.FAILED
    s.add(ExecutionRow(proposal_id=row.proposal_id, adapter=iam.name, status=status.value, result=result, at_ms=_ms(now)))
    row.status, row.result = status.value, result
    ledger.append(s, kind=AuditKind.ACTION, subject_id=row.proposal_id, at=now,
                  payload={"proposal_id": row.proposal_id, "kind": row.kind, "adapter": iam.name,
                           "status": status.value, "result": result})
    return True


def approved_without_execution(s: Session) -> list[str]:
    """Ids of approved proposals not executed yet (their process died after the approval), oldest first."""
    return list(s.scalars(select(ProposalRow.proposal_id).where(
        ProposalRow.status == Status.APPROVED.value,
        ~exists().where(ExecutionRow.proposal_id == ProposalRow.proposal_id)).order_by(ProposalRow.decided_ms)))


def execute_approved(sessions: sessionmaker[Session], *, iam: IamAdapter, ledger: Ledger, clock: Clock,
                     rules: ApprovalRules, proposal_id: str | None = None,
                     before_execute: Callable[[str], None] | None = None,
                     principals: Mapping[str, Principal] | None = None,
                     tier_of: TiersOf = lambda _p: None) -> list[ProposalRecord]:
    """Execute approved proposals that have no execution yet: ``proposal_id`` only, or every one (the
    recovery sweep). Each runs in its own transaction, under the proposal's row lock, and is re-checked
    there, so concurrent sweeps and deciders execute each proposal once. ``before_execute(proposal_id)``
    runs after the approval is committed and before the adapter is called (a test hook; a no-op by
    default). Returns the records of the proposals executed by this call, applied or failed."""
    if proposal_id is not None:
        due = [proposal_id]
    else:
        with sessions() as s:
            due = approved_without_execution(s)
    done: list[ProposalRecord] = []
    for pid in due:
        if before_execute is not None:
            before_execute(pid)
        try:
            with sessions.begin() as s:
                try:
                    row = _locked(s, pid)
                except ApprovalError:
                    continue
                if row.status != Status.APPROVED.value or s.get(ExecutionRow, pid) is not None:
                    continue  # executed already, by another request or sweep
                if not execute(s, row=row, iam=iam, ledger=ledger, clock=clock, rules=rules, principals=principals,
                               tier_of=tier_of):
                    log.warning("IAM adapter %s unavailable for proposal %s (or not due again yet); it stays "
                                "approved and is retried", iam.name, pid)
                    continue
                s.flush()
                done.append(record(s, row, rules))
        except IamUnavailable as exc:  # raised outside the adapter call: stays approved, the sweep retries
            log.warning("IAM adapter %s unavailable for proposal %s; it stays approved and is retried: %s",
                        iam.name, pid, exc)
    return done


def list_proposals(s: Session, *, rules: ApprovalRules, status: Status | None = None,
                   limit: int = 100) -> list[ProposalRecord]:
    q = select(ProposalRow).order_by(ProposalRow.created_ms.desc()).limit(limit)
    if status is not None:
        q = q.where(ProposalRow.status == status.value)
    return [record(s, r, rules) for r in s.scalars(q)]



class StoreProposer:
    """The :class:`tools.context.Proposer` the tools use: the same ``create`` as the agent's own drafts."""

    def __init__(self, *, sessions: Any, rules: ApprovalRules, ledger: Ledger, clock: Clock):
        self.sessions, self.rules, self.ledger, self.clock = sessions, rules, ledger, clock

    def propose(self, *, kind: str, payload: dict[str, Any], evidence: dict[str, Any], requested_by: str,
                thread_id: str | None = None) -> dict[str, Any]:
        with self.sessions.begin() as s:
            rec = create(s, kind=Kind(kind), payload=payload, evidence=evidence, requested_by=requested_by,
                         rules=self.rules, ledger=self.ledger, clock=self.clock, thread_id=thread_id)
        return rec.model_dump(mode="json")
