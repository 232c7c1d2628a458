"""Agent turns: a question to the agent, and the narrative of one decision for an audience.

No lock is held across a language-model call. Each conversation thread runs one turn at a time (its
checkpoint is one record); a second turn on a busy thread is refused at once, never queued, and threads
do not wait on each other. Writes a turn makes (its audit entry, a drafted proposal) are short
transactions of their own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from agent.gather import gather
from agent.graph import answer_of
from agent.narrative import Audience, Intent
from agent.planner import Plan
from integrations.services.deps import ServiceDeps
from tools.registry import ToolNotFound


class ThreadBusy(Exception):
    """Another turn is running on this thread right now; nothing was done."""


class _Threads:
    """The threads with a turn in progress (a mutex guards only the set, never a turn)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy: set[str] = set()

    @contextmanager
    def turn(self, thread_id: str) -> Iterator[None]:
        with self._mutex:
            if thread_id in self._busy:
                raise ThreadBusy(thread_id)
            self._busy.add(thread_id)
        try:
            yield
        finally:
            with self._mutex:
                self._busy.discard(thread_id)


THREADS = _Threads()


def new_thread_id(prefix: str = "ask") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class AskOwnerMismatch(Exception):
    """The thread was started by another principal."""


def thread_owner(*, deps: ServiceDeps, thread_id: str) -> str | None:
    """Who started ``thread_id`` (None for a new thread)."""
    values = deps.graph().get_state({"configurable": {"thread_id": thread_id}}).values or {}
    owner = values.get("asked_by")
    return str(owner) if owner is not None else None


def ask(*, deps: ServiceDeps, question: str, asked_by: str, audience: Audience = Audience.ANALYST,
        thread_id: str | None = None, can_propose: bool | None = None) -> dict[str, Any]:
    """One agent turn: the `ask --json` contract plus ``thread_id``.

    Args:
        deps: the service's dependencies.
        question: the asker's words (data, never instructions).
        asked_by: who asks (recorded as requester of anything drafted).
        audience: who the answer is for.
        thread_id: continue this thread (the caller checks it is the asker's); a new one by default.
        can_propose: whether the turn may draft a proposal; by default only a configured principal may
            (an unmapped chat user can ask, never originate a request).

    Raises:
        ThreadBusy: a turn is already running on ``thread_id``.
        AskOwnerMismatch: ``thread_id`` was started by someone else.
    """
    tid = thread_id or new_thread_id()
    if thread_id is not None:
        owner = thread_owner(deps=deps, thread_id=thread_id)
        if owner is not None and owner != asked_by:
            raise AskOwnerMismatch(thread_id)
    may = (asked_by in deps.principals) if can_propose is None else (can_propose and asked_by in deps.principals)
    cfg = {"configurable": {"thread_id": tid}}
    graph = deps.graph()
    with THREADS.turn(tid):
        graph.invoke({"question": question, "asked_by": asked_by, "audience": audience.value, "can_propose": may},
                     cfg)
        out = answer_of(graph.get_state(cfg).values)
    return {**out, "thread_id": tid}


class Narrated(BaseModel):
    decision_id: str
    audience: Audience
    text: str
    claims: list[dict[str, Any]]
    citations: list[dict[str, Any]]
    narrator: str
    decision_ids: list[str]
    verified: bool
    verification_failures: list[dict[str, Any]]
    fallback_from: dict[str, Any] | None
    narration: dict[str, Any] | None = None  # the LLM draft's own record (dropped sentences, tokens), if any


def explain_decision(*, deps: ServiceDeps, decision_id: str, audience: Audience) -> Narrated:
    """The narrative of one decision for ``audience``, verified against its evidence (an LLM draft that
    fails is replaced by the deterministic one, and the failure is reported): the same gather, narrator and
    verifier as an agent turn, without the planner.

    Raises:
        ToolNotFound: no such decision.
    """
    agent = deps.agent()
    question = f"Why was decision {decision_id} made?"
    ev = gather(agent.tools, Plan(intent=Intent.WHY_DECISION, decision_id=decision_id), question)
    if ev.decision is None:
        raise ToolNotFound("decision", decision_id)
    narrative, verification = agent.narrate(ev, audience)
    return Narrated(decision_id=decision_id, audience=audience, text=narrative.text,
                    claims=[c.model_dump(mode="json") for c in narrative.claims],
                    citations=[c.model_dump(mode="json") for c in narrative.citations], narrator=narrative.narrator,
                    decision_ids=ev.decision_ids(), verified=verification["verified"],
                    verification_failures=verification.get("failures", []),
                    fallback_from=verification.get("fallback_from"), narration=verification.get("narration"))
