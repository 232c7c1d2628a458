"""Principals and roles from the configuration file (GLASSGATE_CONFIG; a demo one ships)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.approval import Principal, Role

DEMO_CONFIG = Path(__file__).parent / "demo-principals.yaml"


class PrincipalEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=128)]
    roles: list[Role]
    slack_user_id: str | None = None
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class PrincipalsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principals: list[PrincipalEntry]


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names the file and field."""


def load_principals(path: Path) -> dict[str, PrincipalEntry]:
    try:
        raw = yaml.safe_load(path.read_text())
        parsed = PrincipalsFile.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from None
    except ValidationError as exc:
        bad = "; ".join(".".join(str(x) for x in e["loc"]) + f": {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"{path}: {bad}") from None
    ids = [p.id for p in parsed.principals]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{path}: principals: duplicate id")
    return {p.id: p for p in parsed.principals}


def as_principals(entries: dict[str, PrincipalEntry]) -> dict[str, Principal]:
    return {k: Principal(id=k, roles=frozenset(v.roles)) for k, v in entries.items()}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
