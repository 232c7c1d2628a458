"""The small frozen dependencies object the services take (instead of the Runtime locator).

Built once per process at the edge by :meth:`ServiceDeps.from_runtime`; tests build their own.
Heavy parts (the risk engine, which needs a trained model; the agent and its graph, which may
build an LLM client) are providers, so a service that does not need them never builds them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from agent.approval import ApprovalRules, Principal
from risk.audit import Ledger
from risk.policy import PolicySet
from tools.context import ToolContext

if TYPE_CHECKING:
    from agent.deps import AgentDeps
    from integrations.runtime import Runtime
    from integrations.settings import Settings
    from risk.engine import DecisionEngine


@dataclass(frozen=True, kw_only=True)
class ServiceDeps:
    """What a use case may touch.

    Attributes:
        settings: the settings loaded at the edge (read, never re-loaded here).
        sessions: session factory over the decision store.
        ledger: the audit ledger.
        clock: aware UTC "now" (tests inject a fixed one).
        policy: the shipped policy set (approved versions in the store apply on top).
        rules: who may approve which action kind.
        principals: the configured principals by id.
        tools: the tools' context (the one registry's dependencies).
        engine: provider of the decision engine (raises ModelNotFoundError without a model).
        agent: provider of the agent's dependencies (planner, narrator, IAM adapter).
        graph: provider of the compiled agent graph with its checkpointer.
        write_lock: serialises the process's writers (SQLite has one); held only around short transactions,
            never across a language-model call or an approval wait (the app passes its own).
    """

    settings: Settings
    sessions: sessionmaker[Session]
    ledger: Ledger
    clock: Callable[[], datetime]
    policy: PolicySet
    rules: ApprovalRules
    principals: Mapping[str, Principal]
    tools: ToolContext
    engine: Callable[[], DecisionEngine]
    agent: Callable[[], AgentDeps]
    graph: Callable[[], Any]
    write_lock: AbstractContextManager[Any] = field(default_factory=threading.Lock)

    @classmethod
    def from_runtime(cls, rt: Runtime, *, write_lock: AbstractContextManager[Any] | None = None) -> ServiceDeps:
        extra = {} if write_lock is None else {"write_lock": write_lock}
        return cls(**extra,  # type: ignore[arg-type]
                   settings=rt.settings, sessions=rt.sessions, ledger=rt.ledger, clock=lambda: rt.clock(), policy=rt.policy,
                   rules=rt.approval_rules, principals=rt.principals, tools=rt.tool_context(),
                   engine=lambda: rt.engine, agent=lambda: rt.agent_deps, graph=lambda: rt.graph)
