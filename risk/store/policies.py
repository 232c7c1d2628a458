"""Approved policy versions: the shipped documents plus every version approved since.

The engine and the tools read the *effective* policy set: for each policy id, the
highest approved version in the database if it is newer than the shipped file.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from risk.policy import PolicyDoc, PolicySet, parse_policy
from risk.store.control import PolicyVersionRow


def version_mark(s: Session) -> int:
    """Changes whenever a version is approved (cheap to poll)."""
    return int(s.scalar(select(func.max(PolicyVersionRow.id))) or 0)


def effective_policy(s: Session, base: PolicySet) -> PolicySet:
    """``base`` with every policy replaced by its latest approved version, where newer."""
    latest: dict[str, PolicyVersionRow] = {}
    for row in s.scalars(select(PolicyVersionRow).order_by(PolicyVersionRow.version)):
        latest[row.policy_id] = row
    docs = []
    for doc in base.docs:
        newer = latest.get(doc.id)
        docs.append(parse_policy(newer.text, doc.path) if newer is not None and newer.version > doc.version else doc)
    return PolicySet(docs)


def record_version(s: Session, *, doc: PolicyDoc, proposal_id: str | None, now_ms: int) -> PolicyVersionRow:
    row = PolicyVersionRow(policy_id=doc.id, version=doc.version, text=doc.text,
                           content_hash=hashlib.sha256(doc.text.encode()).hexdigest(), proposal_id=proposal_id,
                           created_ms=now_ms)
    s.add(row)
    return row


def version_text(s: Session, policy_id: str, version: int) -> str | None:
    """The text of an approved version (older decisions cite the version they were made under)."""
    return s.scalar(select(PolicyVersionRow.text).where(PolicyVersionRow.policy_id == policy_id,
                                                        PolicyVersionRow.version == version))
