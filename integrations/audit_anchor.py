"""Wiring of the audit ledger's anchors: the Ed25519 key files, the sinks, and `audit init`.

The signing key lives outside GLASSGATE_HOME (settings refuse a key path inside it), so an attacker who
can rewrite the database and the home cannot sign a forged head. The service reads the private key to
sign checkpoints; verification needs only the public key (``<key>.pub``), so a verifier elsewhere can be
given that alone. The ledger is never initialised implicitly (say, when a fresh database is created):
then deleting the database and the witness would make the service sign a brand-new, empty ledger.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from integrations.settings import Settings
from risk.audit import Ledger
from risk.audit_heads import AppendOnlyFileSink, HeadSigner, HeadSink, HeadVerifier, SignedHead


class HttpHeadSink:
    """POSTs each signed head as JSON to an endpoint the service cannot rewrite (a transparency log, a
    SIEM collector). Write-only from here: verification reads the file sink, not this one."""

    def __init__(self, url: str, *, timeout: float = 5.0, transport: httpx.BaseTransport | None = None):
        self.url = url
        self.name = f"HTTP sink {url}"
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def publish(self, head: SignedHead) -> None:
        r = self._client.post(self.url, content=head.model_dump_json(), headers={"Content-Type": "application/json"})
        r.raise_for_status()

    def latest(self) -> SignedHead | None | str:
        return None


def _public_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def create_key(key_path: Path) -> HeadSigner:
    """Create an Ed25519 key at ``key_path`` (0600, directory 0700) and its public key beside it.

    Raises:
        FileExistsError: A key is already there (never overwritten: heads signed with it would orphan).
    """
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    _public_path(key_path).write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return HeadSigner(key)


def load_signer(key_path: Path) -> HeadSigner | None:
    """The signer from the private key file, or None when there is none (the ledger is not initialised)."""
    if not key_path.exists():
        return None
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_path} is not an Ed25519 private key")
    return HeadSigner(key)


def load_verifier(key_path: Path) -> HeadVerifier | None:
    """The verifier from ``<key>.pub`` (or from the private key when only that is present)."""
    pub = _public_path(key_path)
    if pub.exists():
        key = load_pem_public_key(pub.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{pub} is not an Ed25519 public key")
        return HeadVerifier(key)
    signer = load_signer(key_path)
    return None if signer is None else HeadVerifier(signer._key.public_key())  # noqa: SLF001


def sinks(settings: Settings, *, transport: httpx.BaseTransport | None = None) -> list[HeadSink]:
    out: list[HeadSink] = [AppendOnlyFileSink(settings.audit_sink)]
    if settings.audit_sink_url:
        out.append(HttpHeadSink(settings.audit_sink_url, transport=transport))
    return out


def build_ledger(settings: Settings, *, clock: Callable[[], datetime]) -> Ledger:
    """The ledger with its witness, key and sinks as configured."""
    return Ledger(witness_path=settings.witness_path, signer=load_signer(settings.audit_key),
                  verifier=load_verifier(settings.audit_key), sinks=sinks(settings), clock=clock)


def init_ledger(rt: Any, *, adopt: bool = False) -> tuple[SignedHead, bool]:
    """`glassgate audit init`: create the key if there is none, then the first signed witness.

    Args:
        rt: The process's Runtime (its cached ledger is rebuilt with the new key).
        adopt: Trust a non-empty ledger or replace an existing witness (see ``Ledger.init``).

    Returns:
        The signed head written, and whether a new key was created.

    Raises:
        LedgerError: Refused (already initialised, or a non-empty ledger without ``adopt``).
    """
    settings: Settings = rt.settings
    created = load_signer(settings.audit_key) is None
    ledger = build_ledger(settings, clock=rt.clock)
    if created:
        ledger.signer = create_key(settings.audit_key)
        ledger.verifier = load_verifier(settings.audit_key)
    settings.home.mkdir(parents=True, exist_ok=True)
    with rt.sessions() as s:
        head = ledger.init(s, ledger_id=uuid.uuid4().hex, adopt=adopt)
    for cached in ("ledger", "engine", "agent_deps", "graph"):  # built with the old (keyless) ledger
        rt.__dict__.pop(cached, None)
    return head, created
