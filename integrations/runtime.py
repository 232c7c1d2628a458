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
from integrations.audit_anchor import build_ledger
from integrations.iam.factory import build_iam
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
        return build_ledger(self.settings, clock=self.clock)  # witness, signing key and sinks (audit_anchor.py)

    def current_model_dir(self) -> Path:
        pointer = self.settings.models_dir / "CURRENT"
        if not pointer.exists():
            raise ModelNotFoundError(
                f"no trained model under {self.settings.models_dir}: run `glassgate train` or `glassgate demo --no-serve`")
        return self.settings.models_dir / pointer.read_text().strip()

    @cached_property
    def model(self) -> RiskModel:
        live = self._registry_live()
        return self.load_model_version(live) if live else load_model(self.current_model_dir())

    def _registry_live(self) -> str | None:
        """The live version a promotion recorded in the store, if the store exists and has one."""
        from risk.registry import current

        if self.settings.db_url.startswith("sqlite") and not (self.settings.home / "glassgate.db").exists():
            return None
        with self.sessions() as s:
            live = current(s, "live")
        return live if live and (self.settings.models_dir / live / "model.joblib").exists() else None

    def save_model(self, model: RiskModel) -> Path:
        out = model.save(self.settings.models_dir)
        (self.settings.models_dir / "CURRENT").write_text(model.version + "\n")
        if self._registry_live() is not None:  # the store tracks versions: a newly trained model goes live there too
            from risk.registry import register

            with self.sessions.begin() as s:
                register(s, model, status="live", now_ms=int(self.clock().timestamp() * 1000))
        self.__dict__.pop("model", None)
        self.__dict__.pop("engine", None)
        return out

    @cached_property
    def engine(self) -> DecisionEngine:
        model = self.model  # first: a missing model must fail before any state is created
        from integrations.resources import load_catalog

        return DecisionEngine(sessions=self.sessions, model=model, policy=self.policy, ledger=self.ledger,
                              clock=self.clock, model_loader=self.load_model_version,  # type: ignore[arg-type]
                              catalog=load_catalog(self.settings.resources_path))

    def load_model_version(self, version: str) -> RiskModel:
        """One saved version from the models directory (the store's registry names which is live)."""
        return load_model(self.settings.models_dir / version)


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
        from agent.llm import LlmConfig, build_llm
        from integrations import llm_fallbacks

        st = self.settings
        cfg = LlmConfig(timeout=st.llm_timeout_seconds, retries=st.llm_retries, plan_max_tokens=st.llm_plan_max_tokens,
                        narrate_max_tokens=st.llm_max_tokens, response_format=st.llm_response_format,
                        tool_calls=st.llm_tool_calls)
        planner, narrator = build_llm(base_url=st.llm_base_url, model=st.llm_model, api_key=st.openai_api_key, cfg=cfg)
        return AgentDeps(tools=self.tool_context(), rules=self.approval_rules, ledger=self.ledger,
                         iam=build_iam(self.settings, policy=self.policy, rules=self.approval_rules), clock=self.clock,  # type: ignore[arg-type]
                         principals=self.principals, planner=planner, narrator=narrator,
                         on_fallback=llm_fallbacks.count)

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
