"""Wiring: builds the stores, policy, ledger and engine from settings, once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent.approval import ApprovalRules, Principal
from agent.deps import AgentDeps
from agent.graph import build_graph
from agent.iam import BuiltinIam
from integrations.principals import as_principals, load_principals
from integrations.settings import Settings
from knowledge.index import PolicyIndex
from risk.audit import Ledger
from risk.engine import DecisionEngine
from risk.model import ModelNotFoundError, RiskModel, load_model
from risk.policy import PolicySet, load_policies
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade
from risk.store.policies import effective_policy
from tools.context import ToolContext
from tools.policies import sync_index


def utcnow() -> datetime:
    return datetime.now(UTC)


def private_file(path: Path) -> Path:
    """Create ``path`` readable and writable by its owner only (0600) if it does not exist yet; SQLite gives
    its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return path


@dataclass
class Runtime:
    settings: Settings
    clock: Any = None  # Callable[[], datetime]; the settings decide (GLASSGATE_NOW) when none is given

    def __post_init__(self) -> None:
        if self.clock is None:
            fixed = self.settings.now
            self.clock = (lambda: fixed) if fixed is not None else utcnow

    @cached_property
    def db(self) -> Engine:
        if self.settings.db_url.startswith("sqlite"):
            self.settings.home.mkdir(parents=True, exist_ok=True)
            if self.settings.database_url is None:
                private_file(self.settings.home / "glassgate.db")
        engine = make_engine(self.settings.db_url)
        upgrade(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.db)

    @cached_property
    def policy(self) -> PolicySet:
        return load_policies(self.settings.policy_dir)

    @cached_property
    def ledger(self) -> Ledger:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        return Ledger(witness_path=self.settings.witness_path, clock=self.clock)  # type: ignore[arg-type]

    def current_model_dir(self) -> Path:
        pointer = self.settings.models_dir / "CURRENT"
        if not pointer.exists():
            raise ModelNotFoundError(
                f"no trained model under {self.settings.models_dir}: run `glassgate train` or `glassgate demo --no-serve`")
        return self.settings.models_dir / pointer.read_text().strip()

    @cached_property
    def model(self) -> RiskModel:
        return load_model(self.current_model_dir())

    def save_model(self, model: RiskModel) -> Path:
        out = model.save(self.settings.models_dir)
        (self.settings.models_dir / "CURRENT").write_text(model.version + "\n")
        self.__dict__.pop("model", None)
        self.__dict__.pop("engine", None)
        return out

    @cached_property
    def engine(self) -> DecisionEngine:
        model = self.model  # first: a missing model must fail before any state is created
        from integrations.resources import load_catalog

        return DecisionEngine(sessions=self.sessions, model=model, policy=self.policy, ledger=self.ledger,
                              clock=self.clock, catalog=load_catalog(self.settings.resources_path))  # type: ignore[arg-type]


    # ------------------------------------------------------------------ the agent

    @cached_property
    def principals(self) -> dict[str, Principal]:
        return as_principals(load_principals(self.settings.principals_path))

    @cached_property
    def index(self) -> PolicyIndex:
        if self.settings.chroma_url:
            idx = PolicyIndex.open_http(self.settings.chroma_url)
        else:
            idx = PolicyIndex.open_persistent(self.settings.chroma_path)
        with self.sessions() as s:
            sync_index(idx, s, effective_policy(s, self.policy))
        return idx

    def tool_context(self, *, with_index: bool = True, with_model: bool = True) -> ToolContext:
        model = None
        if with_model:
            try:
                model = self.model
            except ModelNotFoundError:
                model = None
        from agent.proposals import StoreProposer

        proposer = StoreProposer(sessions=self.sessions, rules=self.approval_rules, ledger=self.ledger,
                                 clock=self.clock)  # type: ignore[arg-type]
        return ToolContext(sessions=self.sessions, policy=self.policy, model=model, clock=self.clock,  # type: ignore[arg-type]
                           tz=ZoneInfo(self.settings.tz), index=_LazyIndex(self) if with_index else None,
                           proposer=proposer)

    @cached_property
    def approval_rules(self) -> ApprovalRules:
        return ApprovalRules.from_policy(self.policy)

    @cached_property
    def agent_deps(self) -> AgentDeps:
        from agent.llm import build_llm

        planner, narrator = build_llm(base_url=self.settings.llm_base_url, model=self.settings.llm_model,
                                      api_key=self.settings.openai_api_key)
        return AgentDeps(tools=self.tool_context(), rules=self.approval_rules, ledger=self.ledger,
                         iam=BuiltinIam(base_policy=self.policy, rules=self.approval_rules), clock=self.clock,  # type: ignore[arg-type]
                         principals=self.principals, planner=planner, narrator=narrator)

    @cached_property
    def checkpointer(self) -> Any:
        saver: Any
        if self.settings.db_url.startswith("postgresql"):
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            url = self.settings.db_url.replace("postgresql+psycopg://", "postgresql://")
            # A pool whose connections are checked before use: after a database restart, the next agent turn
            # gets a fresh connection instead of the dead one (a single connection would stay dead).
            pool = ConnectionPool(url, min_size=1, max_size=4, open=True, check=ConnectionPool.check_connection,
                                  kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
            saver = PostgresSaver(pool)  # type: ignore[arg-type]
        else:
            import sqlite3

            from langgraph.checkpoint.sqlite import SqliteSaver

            self.settings.home.mkdir(parents=True, exist_ok=True)
            saver = SqliteSaver(sqlite3.connect(private_file(self.settings.checkpoint_path), check_same_thread=False))
        saver.setup()
        return saver

    @cached_property
    def graph(self) -> Any:
        return build_graph(self.agent_deps, checkpointer=self.checkpointer)


class _LazyIndex:
    """Opens (and syncs) the policy index on first use: most questions never need semantic search,
    and loading the embedding model costs seconds."""

    def __init__(self, rt: Runtime):
        self._rt = rt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rt.index, name)
