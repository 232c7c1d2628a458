"""Re-explanations: a decision's attributions recomputed under another model version, kept beside the
original.

The explanation a decision recorded (``explanations``) is what was shown when the decision was made and
stays untouched. A re-explanation row is keyed by ``(decision_id, model_version)``: one per decision and
model, so a re-run skips what is done and two runs cannot store one twice.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import BigInteger, Float, Integer, String, Text, and_, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from risk.store.base import Base, JSONType
from risk.store.schema import DecisionRow, ExplanationRow


class ReexplanationRow(Base):
    __tablename__ = "reexplanations"

    decision_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    base_value: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    risk: Mapped[float] = mapped_column(Float)
    top_family: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # ok | unexplainable (does not add up)
    additivity_error: Mapped[float] = mapped_column(Float)
    contributions: Mapped[list[float]] = mapped_column(JSONType)  # log-odds, in the model's feature order
    missing_features: Mapped[int] = mapped_column(Integer)  # features the decision did not record (NaN)
    created_ms: Mapped[int] = mapped_column(BigInteger)


_R = ReexplanationRow.__table__


def _pending(model_version: str, since_ms: int | None) -> Any:
    """Decisions made by another model that have no re-explanation under ``model_version`` yet."""
    cond = [DecisionRow.model_version != model_version, _R.c.decision_id.is_(None)]
    if since_ms is not None:
        cond.append(DecisionRow.ts_ms >= since_ms)
    return and_(*cond)


def count_pending(s: Session, *, model_version: str, since_ms: int | None) -> int:
    """How many decisions a re-explanation under ``model_version`` would cover."""
    stmt = select(func.count()).select_from(_from(model_version)).where(_pending(model_version, since_ms))
    return int(s.scalar(stmt) or 0)


def pending_chunk(s: Session, *, model_version: str, since_ms: int | None, after_seq: int,
                  limit: int) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """The next ``limit`` pending decisions in arrival order after ``after_seq``: (seq, decision_id, factors)."""
    # Only the factors, as text, decoded by orjson: decoding the whole body with json was most of the time.
    stmt = (select(DecisionRow.seq, DecisionRow.decision_id, cast(ExplanationRow.body["factors"], Text))
            .select_from(_from(model_version)).where(_pending(model_version, since_ms), DecisionRow.seq > after_seq)
            .order_by(DecisionRow.seq).limit(limit))
    return [(int(seq), did, orjson.loads(factors) if factors else []) for seq, did, factors in s.execute(stmt)]


def _from(model_version: str) -> Any:
    return DecisionRow.__table__.join(ExplanationRow.__table__, ExplanationRow.decision_id == DecisionRow.decision_id) \
        .outerjoin(_R, and_(_R.c.decision_id == DecisionRow.decision_id, _R.c.model_version == model_version))


def save_reexplanations(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert rows in one statement per chunk; a row a concurrent run stored first is skipped."""
    if not rows:
        return
    dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    s.execute(dialect.insert(_R).on_conflict_do_nothing(index_elements=["decision_id", "model_version"]), rows)
