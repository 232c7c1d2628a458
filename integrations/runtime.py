"""Wiring: builds the stores, policy, ledger and engine from settings, once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from integrations.settings import Settings
from risk.audit import Ledger
from risk.engine import DecisionEngine
from risk.model import ModelNotFoundError, RiskModel, load_model
from risk.policy import PolicySet, load_policies
from risk.store.db import make_engine, session_factory
from risk.store.migrate import upgrade


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    clock: object = field(default=utcnow)

    @cached_property
    def db(self) -> Engine:
        if self.settings.db_url.startswith("sqlite"):
            self.settings.home.mkdir(parents=True, exist_ok=True)
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
        return DecisionEngine(sessions=self.sessions, model=model, policy=self.policy, ledger=self.ledger,
                              clock=self.clock)  # type: ignore[arg-type]
