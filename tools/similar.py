"""Decisions with similar explanations: nearest neighbours over stored contribution vectors.

Two decisions are alike when the same signals pushed their risk the same way
and by similar amounts: cosine similarity of their per-feature log-odds
contributions (catalog order). The neighbours' latest analyst verdicts answer
"is this a known false-positive pattern?".
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, select

from risk.store.schema import DecisionRow, ExplanationRow
from tools.context import ToolContext
from tools.errors import ToolNotFound
from tools.records import DecisionSummary, ToolInput, Verdict, latest_verdicts, summary_of


class SimilarDecisionsInput(ToolInput):
    decision_id: str = Field(description="The decision to find look-alikes of.")
    k: int = Field(default=10, ge=1, le=100, description="How many neighbours to return.")
    same_outcome: bool = Field(default=False, description="Only decisions with the same outcome.")
    same_scope: bool = Field(default=False, description="Only decisions under the same policy and threshold scope.")
    include_self: bool = Field(default=False, description="Let the decision itself be a neighbour (similarity 1).")
    candidates: int = Field(default=5000, ge=1, le=50_000, description="Compare with at most this many recent decisions.")


class Neighbour(BaseModel):
    similarity: float = Field(description="Cosine similarity of the contribution vectors, -1 to 1.")
    decision: DecisionSummary
    verdict: Verdict | None = Field(description="The latest analyst verdict, if any.")


class NeighbourSummary(BaseModel):
    neighbours: int
    malicious: int
    benign: int
    unlabelled: int
    attack_types: dict[str, int] = Field(description="Attack types among the confirmed-malicious neighbours.")


class SimilarDecisionsOutput(BaseModel):
    decision: DecisionSummary
    candidates_considered: int
    neighbours: list[Neighbour] = Field(description="Most similar first.")
    summary: NeighbourSummary


def cosine(matrix: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row with ``v``; 0 where either vector is zero."""
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = np.where(norms > 0, (matrix @ v) / norms, 0.0)
    return np.clip(sims, -1.0, 1.0)


def similar_decisions(ctx: ToolContext, args: SimilarDecisionsInput) -> SimilarDecisionsOutput:
    """Find past decisions whose explanations look like this one's and report their analyst verdicts; use it for
    "is this a known false-positive pattern?" or "have we seen this before?"."""
    with ctx.sessions() as s:
        row = s.execute(select(DecisionRow, ExplanationRow)
                        .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id)
                        .where(DecisionRow.decision_id == args.decision_id)).first()
        if row is None:
            raise ToolNotFound("decision", args.decision_id)
        target, texpl = row
        conds: list[ColumnElement[bool]] = []
        if args.same_outcome:
            conds.append(DecisionRow.outcome == target.outcome)
        if args.same_scope:
            conds += [DecisionRow.policy_id == target.policy_id, DecisionRow.threshold_scope == target.threshold_scope]
        cand = s.execute(select(DecisionRow.decision_id, ExplanationRow.contributions)
                         .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id)
                         .where(*conds).order_by(DecisionRow.ts_ms.desc(), DecisionRow.seq.desc())
                         .limit(args.candidates)).all()
        v = np.asarray(texpl.contributions, dtype=np.float64)
        pairs = [(i, c) for i, c in cand if i != target.decision_id and len(c) == len(v)]
        if args.include_self:
            pairs.insert(0, (target.decision_id, texpl.contributions))
        ids = [i for i, _ in pairs]
        sims = cosine(np.asarray([c for _, c in pairs], dtype=np.float64).reshape(len(pairs), len(v)), v)
        top = np.argsort(-sims, kind="stable")[: args.k]  # ties keep recency order
        chosen = {ids[j]: float(sims[j]) for j in top}
        rows = {d.decision_id: (d, fam, body) for d, fam, body in s.execute(
            select(DecisionRow, ExplanationRow.top_family, ExplanationRow.body)
            .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id)
            .where(DecisionRow.decision_id.in_(list(chosen))))}
        verdicts = latest_verdicts(s, chosen)
        neighbours = [Neighbour(similarity=sim, decision=summary_of(*rows[i]), verdict=verdicts.get(i))
                      for i, sim in chosen.items()]
        me = summary_of(target, texpl.top_family, texpl.body)
    mal = [n.verdict for n in neighbours if n.verdict is not None and n.verdict.verdict == "malicious"]
    attack_types: dict[str, int] = {}
    for vd in mal:
        attack_types[vd.attack_type or "unspecified"] = attack_types.get(vd.attack_type or "unspecified", 0) + 1
    labelled = sum(1 for n in neighbours if n.verdict is not None)
    summary = NeighbourSummary(neighbours=len(neighbours), malicious=len(mal), benign=labelled - len(mal),
                               unlabelled=len(neighbours) - labelled, attack_types=attack_types)
    return SimilarDecisionsOutput(decision=me, candidates_considered=len(pairs), neighbours=neighbours, summary=summary)
