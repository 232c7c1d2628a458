"""Proposals and approvals: the ONE approval function every channel calls, reads, and the recovery sweep.

:func:`decide` decides exactly the proposal it is named: it records the decision under the approval rules
(``agent.approval.check_entitled``), commits it, executes the proposal once it is approved (the executor
re-derives eligibility from the approval rows, :mod:`agent.eligibility`), and then, when the proposal was
drafted by an agent thread that is waiting on that very proposal, resumes the thread so it reports the
outcome. A thread waiting on another proposal is left alone. No language-model call happens under any lock
here, and the write lock is held only around short transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from langgraph.types import Command
from pydantic import BaseModel

from agent.approval import ApprovalError, Channel, Principal, Refusal, Status
from agent.proposals import (
    ProposalRecord,
    approved_without_execution,
    execute_approved,
    expire_due,
    record,
)
from agent.proposals import decide as _decide
from agent.proposals import (
    list_proposals as _list,
)
from integrations import faults
from integrations.resources import load_catalog
from integrations.services.ask import THREADS, ThreadBusy
from integrations.services.deps import ServiceDeps
from risk.store.control import ProposalRow

log = logging.getLogger("glassgate.services.proposals")


class Outcome(StrEnum):
    RECORDED = "recorded"  # the decision is in; more approvals are needed
    REJECTED = "rejected"
    APPROVED = "approved"  # approved; execution is due (the IAM system was away): the sweep retries it
    APPLIED = "applied"
    FAILED = "failed"  # the adapter failed, or the executor refused (see the proposal's result)
    REFUSED = "refused"  # nothing changed: see ``refusal`` and ``message``


class DecideResult(BaseModel):
    """What :func:`decide` did. ``proposal`` is the record after it (None when refused as not found)."""

    outcome: Outcome
    proposal_id: str
    proposal: ProposalRecord | None
    refusal: Refusal | None = None
    message: str | None = None
    thread_reported: bool = False


def tier_of(deps: ServiceDeps) -> Any:
    """The tiers a proposal governs, from the resource catalogue (``kind:ot`` governs the OT consoles' tiers)."""
    catalog = load_catalog(deps.settings.resources_path)
    return lambda payload: catalog.tiers_of_payload(payload)


def expire(*, deps: ServiceDeps) -> int:
    """Mark pending proposals past their expiry as expired (audited); how many."""
    with deps.write_lock, deps.sessions.begin() as s:
        return expire_due(s, ledger=deps.ledger, clock=deps.clock)


def decide(*, deps: ServiceDeps, proposal_id: str, principal: Principal, approve: bool, channel: Channel,
           reason: str | None = None, attestation: str | None = None) -> DecideResult:
    """Approve or reject exactly ``proposal_id`` as ``principal`` through ``channel``.

    Args:
        deps: the service's dependencies.
        proposal_id: the proposal decided, and the only one.
        principal: the authenticated principal deciding (must be a configured principal).
        approve: approve (True) or reject (False).
        channel: the channel it came through (the rules may allow only the API for some tiers).
        reason: why, recorded with the decision (required by channels for a rejection).
        attestation: how the principal was established when not by a token (e.g. a local operator at the
            CLI), recorded in the audit entry.

    Returns:
        The outcome as data: recorded / rejected / approved / applied / failed, or refused with the reason.
    """
    expire(deps=deps)
    if deps.principals.get(principal.id) is None:
        return _refused(deps, proposal_id, Refusal.UNKNOWN_PRINCIPAL, f"{principal.id!r} is not a configured principal; "
                        "only principals in the configuration file can decide proposals")
    tiers = tier_of(deps)
    try:
        with deps.write_lock, deps.sessions.begin() as s:
            rec = _decide(s, proposal_id=proposal_id, principal=principal, approve=approve, channel=channel,
                          rules=deps.rules, ledger=deps.ledger, clock=deps.clock, reason=reason, tier_of=tiers,
                          principals=deps.principals, attestation=attestation)
    except ApprovalError as exc:
        return _refused(deps, proposal_id, exc.reason, str(exc))
    if rec.status is Status.APPROVED:
        _execute(deps, proposal_id, tiers)
    reported = _report_to_thread(deps, rec.thread_id, proposal_id)
    final = read_proposal(deps=deps, proposal_id=proposal_id)
    assert final is not None
    outcome = {Status.PENDING: Outcome.RECORDED, Status.REJECTED: Outcome.REJECTED, Status.APPROVED: Outcome.APPROVED,
               Status.APPLIED: Outcome.APPLIED, Status.FAILED: Outcome.FAILED}.get(final.status, Outcome.RECORDED)
    return DecideResult(outcome=outcome, proposal_id=proposal_id, proposal=final, thread_reported=reported)


def _refused(deps: ServiceDeps, proposal_id: str, reason: Refusal, message: str) -> DecideResult:
    return DecideResult(outcome=Outcome.REFUSED, proposal_id=proposal_id,
                        proposal=read_proposal(deps=deps, proposal_id=proposal_id), refusal=reason, message=message)


def _execute(deps: ServiceDeps, proposal_id: str, tiers: Any) -> None:
    hook = faults.hook(faults.parse(deps.settings.failpoints), faults.Failpoint.AFTER_APPROVAL_COMMIT)
    agent = deps.agent()
    with deps.write_lock:
        execute_approved(deps.sessions, iam=agent.iam, ledger=deps.ledger, clock=deps.clock, rules=deps.rules,
                         proposal_id=proposal_id, before_execute=hook, principals=deps.principals, tier_of=tiers)


def _report_to_thread(deps: ServiceDeps, thread_id: str | None, proposal_id: str) -> bool:
    """Resume the agent thread that drafted ``proposal_id`` if, and only if, it waits on that proposal."""
    if not thread_id:
        return False
    graph = deps.graph()
    cfg = {"configurable": {"thread_id": thread_id}}
    try:
        with THREADS.turn(thread_id):
            state = graph.get_state(cfg)
            waiting = [i.value.get("proposal_id") for t in state.tasks for i in t.interrupts
                       if isinstance(i.value, Mapping)]
            if state.next != ("await_approval",) or waiting != [proposal_id]:
                return False  # the thread moved on (another question, another proposal): not its to report
            graph.invoke(Command(resume={"proposal_id": proposal_id}), cfg)
            return True
    except ThreadBusy:
        log.info("thread %s is busy; proposal %s was decided without reporting to it", thread_id, proposal_id)
        return False


def read_proposal(*, deps: ServiceDeps, proposal_id: str) -> ProposalRecord | None:
    """One proposal with its approvals, or None."""
    with deps.sessions() as s:
        row = s.get(ProposalRow, proposal_id)
        return record(s, row, deps.rules) if row is not None else None


def list_proposals(*, deps: ServiceDeps, status: Status | None = None, limit: int = 100) -> list[ProposalRecord]:
    """Proposals newest first (pending ones past their expiry are expired first)."""
    expire(deps=deps)
    with deps.sessions() as s:
        return _list(s, rules=deps.rules, status=status, limit=limit)


def sweep_approved(*, deps: ServiceDeps) -> list[str]:
    """Execute every approved proposal without an execution (its process died between the committed
    approval and the IAM call), each re-checked for eligibility; the ids executed or refused. Failpoints are
    not armed here, so a restart recovers."""
    with deps.sessions() as s:
        if not approved_without_execution(s):
            return []  # the usual case: the agent's dependencies need not even be built
    agent = deps.agent()
    with deps.write_lock:
        done = execute_approved(deps.sessions, iam=agent.iam, ledger=deps.ledger, clock=deps.clock, rules=deps.rules,
                                principals=deps.principals, tier_of=tier_of(deps))
    for rec in done:
        log.warning("recovered proposal %s: approved before the last stop, executed now (%s)", rec.proposal_id,
                    rec.status.value)
    return [rec.proposal_id for rec in done]
