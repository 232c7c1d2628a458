"""Decisions: ingesting access events, and reading decisions, timelines and replays through the tools.

Ingest shares one engine chunk between concurrent callers (:class:`GroupCommit`): one transaction and one
batched explanation for everything pending, under the process's write lock, which is held only for that
chunk (never across a language-model call). Reads go through the one tool registry, like every channel's.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import AbstractContextManager
from typing import Any

from integrations.services.deps import ServiceDeps
from risk.engine import DecisionEngine, Rejected, ScoreResult
from tools.decisions import GetDecisionOutput
from tools.registry import call_tool
from tools.tuning import ReplayThresholdOutput


class GroupCommit:
    """Concurrent requests share one engine chunk (one transaction, one batched explanation) instead of
    queueing for the write lock one by one: each request adds its events to a pending list, then takes
    the write lock; whoever holds it decides everything pending, in arrival order, and hands each request
    its own results. Writes stay serial (SQLite has one writer; the engine allocates sequence numbers and
    profile updates per chunk) and per-user order is arrival order, as before."""

    MAX_EVENTS = 1000

    def __init__(self, write_lock: AbstractContextManager[Any]):
        self._write_lock = write_lock
        self._mutex = threading.Lock()
        self._pending: list[_Slot] = []
        self.batches: Counter[int] = Counter()  # requests per shared chunk (for the record; tests read it)

    def score(self, engine: DecisionEngine, raws: list[Any]) -> list[ScoreResult | Rejected]:
        slot = _Slot(raws)
        with self._mutex:
            self._pending.append(slot)
        with self._write_lock:
            while not slot.done:
                with self._mutex:
                    batch: list[_Slot] = []
                    size = 0
                    while self._pending and (not batch or size + len(self._pending[0].raws) <= self.MAX_EVENTS):
                        size += len(self._pending[0].raws)
                        batch.append(self._pending.pop(0))
                self.batches[len(batch)] += 1
                try:
                    self._decide(engine, batch)
                except Exception as exc:  # noqa: BLE001 - isolate the request that broke the shared chunk
                    if len(batch) == 1:
                        batch[0].error, batch[0].done = exc, True
                        continue
                    # the chunk's transaction rolled back: decide each request alone, so one request's
                    # failure is its own 500 and its neighbours are decided as if it had not been there
                    for b in batch:
                        try:
                            self._decide(engine, [b])
                        except Exception as one:  # noqa: BLE001
                            b.error, b.done = one, True
        if slot.error is not None:
            raise slot.error
        return slot.results

    def _decide(self, engine: DecisionEngine, batch: list[_Slot]) -> None:
        results = list(engine.score_many([r for b in batch for r in b.raws], chunk=self.MAX_EVENTS))
        at = 0
        for b in batch:
            b.results, b.done = results[at: at + len(b.raws)], True
            at += len(b.raws)


class _Slot:
    __slots__ = ("done", "error", "raws", "results")

    def __init__(self, raws: list[Any]):
        self.raws, self.done = raws, False
        self.results: list[ScoreResult | Rejected] = []
        self.error: BaseException | None = None


def ingest(*, deps: ServiceDeps, group: GroupCommit, raws: list[Any]) -> list[ScoreResult | Rejected]:
    """Decide ``raws`` (native events, any shape: a bad one is its own ``Rejected``) in order, sharing an
    engine chunk with concurrent callers of the same ``group``.

    Raises:
        ModelNotFoundError: no trained model.
    """
    return group.score(deps.engine(), raws)


def read_decision(*, deps: ServiceDeps, decision_id: str) -> GetDecisionOutput:
    """One decision in full (the ``get_decision`` tool). Raises ToolNotFound / ToolInputError."""
    out: GetDecisionOutput = call_tool(deps.tools, "get_decision", {"decision_id": decision_id})
    return out


def read_timeline(*, deps: ServiceDeps, session_id: str) -> Any:
    """What changed in a session (the ``session_timeline`` tool). Raises ToolNotFound / ToolInputError."""
    return call_tool(deps.tools, "session_timeline", {"session_id": session_id})


def replay(*, deps: ServiceDeps, policy_id: str, scope: str, deny_at: float | None = None,
           step_up_at: float | None = None) -> ReplayThresholdOutput:
    """Replay a threshold change over the stored decisions it governs (the ``replay_threshold`` tool, over the
    policy in force). Raises ToolInputError naming the bad field."""
    args: dict[str, Any] = {"policy_id": policy_id, "scope": scope}
    if deny_at is not None:
        args["deny_at"] = deny_at
    if step_up_at is not None:
        args["step_up_at"] = step_up_at
    out: ReplayThresholdOutput = call_tool(deps.tools, "replay_threshold", args)
    return out
