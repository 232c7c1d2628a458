"""Settings, loaded once at the edge from the environment (GLASSGATE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, AwareDatetime, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import knowledge


class Settings(BaseSettings):
    """Where glassgate keeps its state and how it reaches its stores."""

    model_config = SettingsConfigDict(env_prefix="GLASSGATE_", extra="ignore")

    home: Path = Path(".glassgate")
    database_url: str | None = None
    policy_dir: Path = knowledge.POLICY_DIR
    config: Path | None = None  # principals and roles (GLASSGATE_CONFIG); the shipped demo file by default
    chroma_url: str | None = None  # a chroma server; embedded under GLASSGATE_HOME/chroma by default
    llm_base_url: str | None = None
    llm_model: str | None = None
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "GLASSGATE_OPENAI_API_KEY"))
    tz: str = "UTC"  # how "this morning" is read
    now: AwareDatetime | None = None  # GLASSGATE_NOW: a fixed clock, to replay or demo "as of" a moment

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("GLASSGATE_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @model_validator(mode="after")
    def _llm_needs_a_model(self) -> Settings:
        if self.llm_base_url and not self.llm_model:
            raise ValueError("GLASSGATE_LLM_MODEL must be set when GLASSGATE_LLM_BASE_URL is")
        return self

    @property
    def uses_llm(self) -> bool:
        return bool(self.llm_base_url)

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def checkpoint_path(self) -> Path:
        return self.home / "checkpoints.db"

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
