"""Settings, loaded once at the edge from the environment (GLASSGATE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import knowledge


class Settings(BaseSettings):
    """Where glassgate keeps its state and how it reaches its stores."""

    model_config = SettingsConfigDict(env_prefix="GLASSGATE_", extra="ignore")

    home: Path = Path(".glassgate")
    database_url: str | None = None
    policy_dir: Path = knowledge.POLICY_DIR

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("GLASSGATE_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'glassgate.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def witness_path(self) -> Path:
        return self.home / "audit-witness.json"


def load_settings() -> Settings:
    return Settings()
