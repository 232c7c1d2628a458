"""What the audit ledger reports: tree heads, the verification report and the checks it names."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class TreeHead(BaseModel):
    model_config = ConfigDict(frozen=True)

    size: int
    root: str
    last_hash: str


class AuditCheck(StrEnum):
    """Which check a verification failure comes from."""

    ENTRIES = "entries"  # the stored entries, their leaf hashes and the hash chain
    HEAD = "head"  # the audit_head row in the database
    WITNESS = "witness"  # the witness file (presence, form, the ledger's agreement with it)
    SIGNATURE = "signature"  # the Ed25519 signature on a head
    SINK = "sink"  # the newest head in an external append-only sink


class AuditFailure(BaseModel):
    model_config = ConfigDict(frozen=True)

    check: AuditCheck
    seq: int | None
    problem: str


class VerifyReport(BaseModel):
    """``problem`` and ``first_bad_seq`` are the first failure's; ``failures`` lists each one found, and
    ``anchors`` what the ledger was checked against (the witness, the signing key, each sink)."""

    ok: bool
    size: int
    root: str | None
    first_bad_seq: int | None
    problem: str | None
    checked_at: datetime
    failures: list[AuditFailure] = []
    anchors: list[str] = []


class LedgerError(RuntimeError):
    """The ledger refused an operation; ``report`` holds the failed verification, if any."""

    def __init__(self, message: str, report: VerifyReport | None = None):
        super().__init__(message)
        self.report = report
