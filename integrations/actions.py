"""The one path for asking the agent and for deciding a proposal, shared by the CLI, the HTTP API and
Slack: whatever the channel, the same graph answers and the same approval rules decide.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from langgraph.types import Command

from agent.approval import ApprovalError, Channel, Principal, Refusal, Status
from agent.gather import gather
from agent.graph import answer_of
from agent.narrative import Audience, Intent
from agent.planner import Plan
from agent.proposals import approved_without_execution, decide, execute_approved, expire_due, record
from integrations import faults
from integrations.periodic import Periodic
from integrations.runtime import Runtime
from risk.store.control import ProposalRow
from tools.registry import ToolNotFound

log = logging.getLogger("glassgate.actions")

SWEEP_SECONDS = 30.0  # how often the service looks for approved proposals left without an execution

# One agent turn at a time per process: a graph turn writes its checkpoint and may draft a proposal, and
# the LLM classes keep per-call state on their instances.
_AGENT_LOCK = threading.Lock()


def new_thread_id(prefix: str = "ask") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ask(rt: Runtime, *, question: str, asked_by: str, audience: Audience = Audience.ANALYST,
        thread_id: str | None = None) -> dict[str, Any]:
    """One agent turn: the `ask --json` contract plus ``thread_id``."""
    tid = thread_id or new_thread_id()
    cfg = {"configurable": {"thread_id": tid}}
    with _AGENT_LOCK:
        rt.graph.invoke({"question": question, "asked_by": asked_by, "audience": audience.value}, cfg)
        out = answer_of(rt.graph.get_state(cfg).values)
    return {**out, "thread_id": tid}


def expire(rt: Runtime) -> None:
    with rt.sessions.begin() as s:
        expire_due(s, ledger=rt.ledger, clock=rt.clock)


def decide_proposal(rt: Runtime, *, proposal_id: str, principal: Principal, approve: bool, channel: Channel,
                    reason: str | None = None) -> dict[str, Any]:
    """Approve or reject a proposal as ``principal`` through ``channel``; the action runs once the approvals
    it needs are in. A proposal drafted by an agent thread that waits at its approval interrupt is decided
    by resuming that thread (so the thread sees the outcome); any other is decided directly. Either way
    the rules are the ones of ``agent.approval.check_entitled``. Raises ApprovalError, nothing changed.

    The approval is committed before the action runs, in a transaction of its own: should this process
    die in between, the proposal stays ``approved`` and the service's sweep (:func:`sweep_approved`)
    executes it, once."""
    expire(rt)
    with rt.sessions() as s:
        row = s.get(ProposalRow, proposal_id)
        if row is None:
            raise ApprovalError(Refusal.NOT_FOUND, f"no proposal {proposal_id!r}")
        thread, status = row.thread_id, row.status
    if thread and status == "pending":
        cfg = {"configurable": {"thread_id": thread}}
        with _AGENT_LOCK:
            if rt.graph.get_state(cfg).next == ("await_approval",):
                answer = {"principal": principal.id, "approve": approve, "channel": channel.value, "reason": reason}
                rt.graph.invoke(Command(resume=answer), cfg)
                values = rt.graph.get_state(cfg).values
                if values.get("approval_error"):
                    e = values["approval_error"]
                    raise ApprovalError(Refusal(e["reason"]), e["message"])
                rec: dict[str, Any] = values["proposal"]
                return rec
    with rt.sessions.begin() as s:
        decided = decide(s, proposal_id=proposal_id, principal=principal, approve=approve, channel=channel,
                         rules=rt.approval_rules, ledger=rt.ledger, clock=rt.clock, reason=reason,
                         tier_of=rt.agent_deps.tier_of)
    if decided.status is not Status.APPROVED:
        return decided.model_dump(mode="json")
    execute_approved(rt.sessions, iam=rt.agent_deps.iam, ledger=rt.ledger, clock=rt.clock, rules=rt.approval_rules,
                     proposal_id=proposal_id,
                     before_execute=faults.hook(faults.parse(rt.settings.failpoints), faults.Failpoint.AFTER_APPROVAL_COMMIT))
    with rt.sessions() as s:
        row = s.get_one(ProposalRow, proposal_id)
        return record(s, row, rt.approval_rules).model_dump(mode="json")


def sweep_approved(rt: Runtime) -> list[str]:
    """Execute every approved proposal that has no execution yet (its process died between the committed
    approval and the IAM call); the ids executed. Failpoints are not armed here, so a restart recovers."""
    with rt.sessions() as s:
        if not approved_without_execution(s):
            return []  # the usual case: the agent's dependencies need not even be built
    done = execute_approved(rt.sessions, iam=rt.agent_deps.iam, ledger=rt.ledger, clock=rt.clock,
                            rules=rt.approval_rules)
    for rec in done:
        log.warning("recovered proposal %s: approved before the last stop, executed now (%s)", rec.proposal_id,
                    rec.status.value)
    return [rec.proposal_id for rec in done]


class ApprovedSweeper(Periodic):
    """The service's recovery loop: :func:`sweep_approved` once at start-up, then every ``interval`` s (an
    execution that failed to run after its approval, say because the database was briefly away, is picked
    up without a restart). Runs under the app's write lock, like every other writer in the service."""

    name = "glassgate-approved-sweep"

    def __init__(self, rt: Runtime, *, interval: float = SWEEP_SECONDS,
                 write_lock: AbstractContextManager[Any] | None = None):
        super().__init__(interval=interval)
        self._rt = rt
        self._lock: Callable[[], AbstractContextManager[Any]] = (lambda: write_lock) if write_lock is not None \
            else nullcontext
        self.recovered: list[str] = []

    def run_once(self) -> list[str]:
        try:
            with self._lock():
                got = sweep_approved(self._rt)
        except Exception:  # noqa: BLE001 - e.g. the database is down; the next run tries again
            log.exception("sweep of approved proposals failed")
            return []
        self.recovered.extend(got)
        return got


def explain_decision(rt: Runtime, *, decision_id: str, audience: Audience) -> dict[str, Any]:
    """The narrative of one decision for ``audience``, verified against its evidence (an LLM draft that
    fails is replaced by the deterministic one, and the failure is reported): the same gather, narrator
    and verifier as an agent turn, without the planner. Raises ToolNotFound for an unknown decision."""
    deps = rt.agent_deps
    question = f"Why was decision {decision_id} made?"
    ev = gather(deps.tools, Plan(intent=Intent.WHY_DECISION, decision_id=decision_id), question)
    if ev.decision is None:
        raise ToolNotFound("decision", decision_id)
    with _AGENT_LOCK:
        narrative, verification = deps.narrate(ev, audience)
    return {"decision_id": decision_id, "audience": audience.value, "text": narrative.text,
            "claims": [c.model_dump(mode="json") for c in narrative.claims],
            "citations": [c.model_dump(mode="json") for c in narrative.citations], "narrator": narrative.narrator,
            "decision_ids": ev.decision_ids(), "verified": verification["verified"],
            "verification_failures": verification.get("failures", []),
            "fallback_from": verification.get("fallback_from"), "narration": verification.get("narration")}
