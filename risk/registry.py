"""Model versions in the store: one live model, at most one shadow candidate, promotion and rollback.

The files of each version live under the models directory (``<dir>/<version>/``, written by
:meth:`risk.model.RiskModel.save`); the store says which version is live and which is in shadow, so every
process (the API, a worker, the CLI) sees a promotion at its next chunk of events. A promotion is applied by
the approval executor (``promote_model`` proposals, POL-EXC-007 §9) in the approval's own transaction.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from risk.explain import feature_vector
from risk.model import RiskModel
from risk.policy import OUTCOME_RANK, Outcome, outcome_for, worst
from risk.store.schema import DecisionRow, ExplanationRow, ModelVersionRow, VerdictRow


class PromotionRefused(ValueError):
    """The candidate cannot be promoted (unknown, not in shadow, or it would newly allow a confirmed attack)."""


def register(s: Session, model: RiskModel, *, status: str, now_ms: int) -> ModelVersionRow:
    """Record a saved model version as ``live`` (retiring the previous live one) or ``shadow``."""
    if status not in ("live", "shadow"):
        raise ValueError("status must be 'live' or 'shadow'")
    for old in s.scalars(select(ModelVersionRow).where(ModelVersionRow.status == status,
                                                        ModelVersionRow.version != model.version)):
        old.status, old.updated_ms = "retired", now_ms
    row = s.get(ModelVersionRow, model.version)
    if row is None:
        row = ModelVersionRow(version=model.version, status=status, card=model.card, created_ms=now_ms, updated_ms=now_ms)
        s.add(row)
    else:
        row.status, row.updated_ms = status, now_ms
    return row


def current(s: Session, status: str) -> str | None:
    """The version with this status (``live`` or ``shadow``), or None."""
    return s.scalar(select(ModelVersionRow.version).where(ModelVersionRow.status == status)
                    .order_by(ModelVersionRow.updated_ms.desc()).limit(1))


def mark(s: Session) -> tuple[str | None, str | None]:
    """(live, shadow): what the engine compares to pick up a promotion made by another process."""
    return current(s, "live"), current(s, "shadow")


def apply_promotion(s: Session, *, version: str, proposal_id: str, by: str, now_ms: int) -> dict[str, Any]:
    """Make the shadow candidate ``version`` live; the previous live version is retired (rollback is a
    promotion of a retired version). Raises PromotionRefused when the recorded evidence forbids it."""
    row = s.get(ModelVersionRow, version, with_for_update=True)
    if row is None:
        raise PromotionRefused(f"model {version} is not registered")
    if row.status == "live":
        return {"version": version, "status": "live", "previous": row.previous, "already": True}
    previous = current(s, "live")
    if previous is not None:
        old = s.get(ModelVersionRow, previous)
        assert old is not None
        old.status, old.updated_ms = "retired", now_ms
    row.status, row.updated_ms, row.proposal_id, row.previous = "live", now_ms, proposal_id, previous
    return {"version": version, "status": "live", "previous": previous, "promoted_by": by}


def _latest_verdicts(s: Session) -> dict[str, tuple[str, str | None]]:
    last = select(VerdictRow.decision_id, func.max(VerdictRow.id).label("id")).group_by(VerdictRow.decision_id).subquery()
    rows = s.execute(select(VerdictRow.decision_id, VerdictRow.verdict, VerdictRow.attack_type)
                     .join(last, last.c.id == VerdictRow.id))
    return {d: (v, a) for d, v, a in rows}


def stored_history(s: Session) -> tuple[list[DecisionRow], np.ndarray, dict[str, tuple[str, str | None]]]:
    """Every stored decision (arrival order), its feature vector and the latest verdicts."""
    rows = s.execute(select(DecisionRow, ExplanationRow.body).join(
        ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id).order_by(DecisionRow.seq)).all()
    X = np.array([feature_vector(body["factors"]) for _, body in rows]) if rows else np.zeros((0, 0))
    return [d for d, _ in rows], X, _latest_verdicts(s)


def replay(s: Session, candidate: RiskModel) -> dict[str, Any]:
    """The candidate against the recorded decisions (the live model's), with the recorded thresholds and
    rules: the outcome matrix by verdict and attack type, benign decisions released, confirmed-malicious
    ones newly allowed (must be 0 for the promotion to be approvable)."""
    decisions, X, verdicts = stored_history(s)
    matrix: Counter[str] = Counter()
    by_attack: Counter[str] = Counter()
    released = newly_allowed = tightened = 0
    examples: list[str] = []
    risks = candidate.risk(X) if len(decisions) else np.zeros(0)
    for d, r in zip(decisions, risks, strict=True):
        thr = outcome_for(float(r), d.step_up_at, d.deny_at)
        after = worst(thr, Outcome(d.rule_floor))
        verdict, attack = verdicts.get(d.decision_id, ("unlabelled", None))
        matrix[f"{verdict}|{d.outcome}->{after.value}"] += 1
        if attack:
            by_attack[f"{attack}|{d.outcome}->{after.value}"] += 1
        if verdict == "benign" and d.outcome != "allow" and after is Outcome.ALLOW:
            released += 1
        if verdict == "malicious" and d.outcome != "allow" and after is Outcome.ALLOW:
            newly_allowed += 1
            examples.append(d.decision_id)
        if OUTCOME_RANK[after] > OUTCOME_RANK[Outcome(d.outcome)]:
            tightened += 1
    return {"decisions": len(decisions), "labelled": sum(1 for d in decisions if d.decision_id in verdicts),
            "outcome_matrix": dict(sorted(matrix.items())), "by_attack_type": dict(sorted(by_attack.items())),
            "benign_released": released, "malicious_newly_allowed": newly_allowed,
            "malicious_newly_allowed_examples": examples[:10], "tightened": tightened,
            "approvable": newly_allowed == 0}


def card_diff(live: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """The model-card figures that changed (test metrics, training set, parameters)."""
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                out.update(flat(v, key + "."))
            elif not isinstance(v, list):
                out[key] = v
        return out

    keep = ("version", "train_rows", "train_attack_share", "params.", "test_metrics.roc_auc", "test_metrics.pr_auc",
            "test_metrics.brier", "from_store.")
    a, b = flat(live), flat(candidate)
    keys = sorted(k for k in set(a) | set(b) if k.startswith(keep) and a.get(k) != b.get(k))
    return {k: {"live": a.get(k), "candidate": b.get(k)} for k in keys}
