"""Signed tree heads and where they are kept: the witness file and external append-only sinks.

A tree head (size, RFC 6962 root, last leaf hash) says what the ledger held at a checkpoint. Signed
with an Ed25519 key that the service's disk-level attacker cannot read, it cannot be forged; published
to a sink that attacker cannot rewrite, it cannot be rolled back. ``ledger_id`` is chosen at
``init``: it names one ledger generation, so an old ledger (with its old, validly signed witness)
restored from a backup does not pass for the current one.

The keys are passed in as objects: reading key files is the outer ring's business.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, ValidationError

from risk.events import canonical_json

# Domain separation: a signature over a tree head can never be replayed as a signature over anything else.
SIGNING_CONTEXT = b"glassgate audit tree head v1\n"


class SignedHead(BaseModel):
    """A tree head as the witness and the sinks keep it (``signature`` None when no key is configured)."""

    model_config = ConfigDict(frozen=True)

    ledger_id: str
    size: int
    root: str
    last_hash: str
    at: str
    key_id: str | None = None
    signature: str | None = None

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers: the context, then the canonical JSON of the other fields."""
        body = self.model_dump(exclude={"key_id", "signature"})
        return SIGNING_CONTEXT + canonical_json(body).encode("utf-8")


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key: hex SHA-256 of its 32 raw bytes, first 16 characters."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class HeadSigner:
    """Signs tree heads with an Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    def sign(self, head: SignedHead) -> SignedHead:
        unsigned = head.model_copy(update={"key_id": self.key_id, "signature": None})
        return unsigned.model_copy(update={"signature": self._key.sign(unsigned.signed_bytes()).hex()})


class HeadVerifier:
    """Checks tree-head signatures with an Ed25519 public key."""

    def __init__(self, public_key: Ed25519PublicKey):
        self._key = public_key
        self.key_id = key_id(public_key)

    def problem(self, head: SignedHead, where: str) -> str | None:
        """Why ``head`` (found in ``where``) is not validly signed by this key, or None when it is."""
        if head.signature is None:
            return f"the {where} is not signed, but an audit public key (key {self.key_id}) is configured"
        if head.key_id != self.key_id:
            return f"the {where} was signed by key {head.key_id}, not by the configured audit key {self.key_id}"
        try:
            self._key.verify(bytes.fromhex(head.signature), head.signed_bytes())
        except (InvalidSignature, ValueError):
            return f"the {where} has a bad signature: it does not verify with the audit public key {self.key_id}"
        return None


class HeadSink(Protocol):
    """Somewhere outside the service's reach that receives every checkpointed head."""

    name: str

    def publish(self, head: SignedHead) -> None:
        """Record ``head``; raise on failure (the checkpoint then does not move the witness)."""
        ...

    def latest(self) -> SignedHead | None | str:
        """The newest head recorded, None when the sink is empty or write-only, or a sentence saying
        why it cannot be read."""
        ...


class AppendOnlyFileSink:
    """One JSON line per head, written through ``O_APPEND``: the service never seeks, truncates or
    rewrites it. Put it where the service's user may append but not rewrite (``chattr +a``, another
    volume, a log shipper's spool); the service can only add lines, never change what was recorded."""

    def __init__(self, path: Path):
        self.path = path
        self.name = f"external sink {path}"

    def publish(self, head: SignedHead) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (canonical_json(head.model_dump()) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def latest(self) -> SignedHead | None | str:
        if not self.path.exists():
            return None
        try:
            lines = self.path.read_bytes().splitlines()
        except OSError as exc:
            return f"the {self.name} cannot be read ({exc.strerror})"
        for line in reversed(lines):  # a torn last line (crash mid-write) is skipped, not trusted
            if line.strip():
                try:
                    return SignedHead.model_validate_json(line)
                except ValidationError:
                    continue
        return None


def newest(sinks: Sequence[HeadSink]) -> list[tuple[HeadSink, SignedHead | None | str]]:
    """Each readable sink with its newest head (or the sentence saying why it could not be read)."""
    return [(sink, sink.latest()) for sink in sinks]
