"""Read paths over the decision store (the tools layer builds on these)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from risk.store.schema import DecisionRow, ExplanationRow, VerdictRow


class NotFound(LookupError):
    """No such record."""


def get_decision(s: Session, decision_id: str) -> tuple[DecisionRow, ExplanationRow]:
    row = s.execute(select(DecisionRow, ExplanationRow).join(
        ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id).where(
        DecisionRow.decision_id == decision_id)).first()
    if row is None:
        raise NotFound(f"no decision {decision_id!r}")
    return row[0], row[1]


def session_decisions(s: Session, session_id: str) -> list[tuple[DecisionRow, ExplanationRow]]:
    rows = s.execute(select(DecisionRow, ExplanationRow).join(
        ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id).where(
        DecisionRow.session_id == session_id).order_by(DecisionRow.ts_ms, DecisionRow.seq)).all()
    if not rows:
        raise NotFound(f"no decisions in session {session_id!r}")
    return [(d, e) for d, e in rows]


def count_decisions(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(DecisionRow)) or 0)


def add_verdict(s: Session, *, decision_id: str, verdict: str, analyst: str, at: str,
                attack_type: str | None = None, note: str | None = None) -> VerdictRow:
    """Record ``analyst``'s current verdict on a decision. History is kept: the analyst's earlier current
    verdict on it (if any) is marked superseded by the new row, never overwritten or deleted."""
    if verdict not in ("malicious", "benign"):
        raise ValueError("verdict must be 'malicious' or 'benign'")
    get_decision(s, decision_id)
    row = VerdictRow(decision_id=decision_id, verdict=verdict, attack_type=attack_type, analyst=analyst, note=note, at=at)
    s.add(row)
    s.flush()
    for old in s.scalars(select(VerdictRow).where(VerdictRow.decision_id == decision_id, VerdictRow.analyst == analyst,
                                                  VerdictRow.superseded_by.is_(None), VerdictRow.id != row.id)):
        old.superseded_by = row.id
    return row


def replay_frame(s: Session, *, policy_id: str, scope: str) -> dict[str, np.ndarray]:
    """Columns for a threshold replay over every decision governed by ``policy_id``/``scope``.

    The latest verdict per decision wins (``0`` unlabelled, ``1`` malicious, ``2`` benign).
    """
    latest = (select(VerdictRow.decision_id, func.max(VerdictRow.id).label("vid"))
              .group_by(VerdictRow.decision_id).subquery())
    q = (select(DecisionRow.risk, DecisionRow.outcome, DecisionRow.rule_floor, VerdictRow.verdict, VerdictRow.attack_type)
         .outerjoin(latest, latest.c.decision_id == DecisionRow.decision_id)
         .outerjoin(VerdictRow, VerdictRow.id == latest.c.vid)
         .where(DecisionRow.policy_id == policy_id, DecisionRow.threshold_scope == scope))
    rows = s.execute(q).all()
    risk, outcome, floor, verdict, attack = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [], [])
    rank = {"allow": 0, "step_up": 1, "deny": 2}
    vcode = {None: 0, "malicious": 1, "benign": 2}
    return {
        "risk": np.array(risk, dtype=np.float64),
        "outcome": np.fromiter(map(rank.__getitem__, outcome), np.int8, len(rows)),
        "rule_floor": np.fromiter(map(rank.__getitem__, floor), np.int8, len(rows)),
        "verdict": np.fromiter(map(vcode.__getitem__, verdict), np.int8, len(rows)),
        "attack_type": np.array([a or "" for a in attack], dtype=object),
    }
