"""Principals and roles from the configuration file (GLASSGATE_CONFIG; a demo one ships)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.approval import Principal, Role
from integrations.settings import SHIPPED_PRINCIPALS

DEMO_CONFIG = SHIPPED_PRINCIPALS


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
    hashes = [p.token_sha256 for p in parsed.principals if p.token_sha256 is not None]
    if len(hashes) != len(set(hashes)):
        raise ConfigError(f"{path}: principals: two principals share a token_sha256")
    return {p.id: p for p in parsed.principals}


def as_principals(entries: dict[str, PrincipalEntry]) -> dict[str, Principal]:
    return {k: Principal(id=k, roles=frozenset(v.roles)) for k, v in entries.items()}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_for_token(entries: Iterable[PrincipalEntry], token: str) -> PrincipalEntry | None:
    """The principal whose ``token_sha256`` is the hash of ``token``, or None.

    Every entry is compared in constant time (no early exit), so timing does not tell how many
    entries were looked at or which one matched.
    """
    presented = token_hash(token)
    found: PrincipalEntry | None = None
    for entry in entries:
        if entry.token_sha256 is not None and hmac.compare_digest(entry.token_sha256, presented):
            found = entry
    return found
