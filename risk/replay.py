"""Threshold replay: what a proposed threshold change would have done to every stored decision.

Vectorised over numpy columns: the outcome under the new thresholds is the
worse of the threshold outcome and the decision's recorded rule floor (hard
rules do not move with thresholds), then a 3x3 transition matrix of
before/after outcomes, broken down by analyst verdict and by attack type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from risk.policy import outcomes_for

OUTCOMES = ("allow", "step_up", "deny")
VERDICTS = ("unlabelled", "malicious", "benign")


class Transition(BaseModel):
    """``matrix[before][after]`` counts, outcomes in :data:`OUTCOMES` order."""

    total: int
    matrix: list[list[int]]
    changed: int

    def cell(self, before: str, after: str) -> int:
        return self.matrix[OUTCOMES.index(before)][OUTCOMES.index(after)]


class ReplayResult(BaseModel):
    policy_id: str
    scope: str
    step_up_at: float
    deny_at: float
    overall: Transition
    by_verdict: dict[str, Transition]
    by_attack_type: dict[str, Transition]
    benign_denials_released: int
    malicious_newly_allowed: int
    malicious_newly_denied: int
    benign_newly_denied: int


def _transition(before: np.ndarray, after: np.ndarray) -> Transition:
    m = np.bincount(before.astype(np.int64) * 3 + after.astype(np.int64), minlength=9).reshape(3, 3)
    return Transition(total=int(len(before)), matrix=m.tolist(), changed=int(len(before) - np.trace(m)))


def replay(frame: dict[str, np.ndarray], *, policy_id: str, scope: str, step_up_at: float, deny_at: float) -> ReplayResult:
    """Replay new thresholds over ``frame`` (from :func:`risk.store.queries.replay_frame`)."""
    if not 0.0 <= step_up_at < deny_at <= 1.0:
        raise ValueError(f"need 0 <= step_up_at < deny_at <= 1, got step_up_at={step_up_at}, deny_at={deny_at}")
    before = frame["outcome"]
    after = np.maximum(outcomes_for(frame["risk"], step_up_at, deny_at).astype(np.int8), frame["rule_floor"])
    verdict = frame["verdict"]
    by_verdict = {name: _transition(before[verdict == i], after[verdict == i]) for i, name in enumerate(VERDICTS)}
    attacks = frame["attack_type"]
    by_attack: dict[str, Transition] = {}
    if len(attacks):
        codes, names = _factorize(attacks)
        for j, name in enumerate(names):
            if name:
                sel = codes == j
                by_attack[str(name)] = _transition(before[sel], after[sel])
    mal, ben = verdict == 1, verdict == 2
    return ReplayResult(
        policy_id=policy_id, scope=scope, step_up_at=step_up_at, deny_at=deny_at,
        overall=_transition(before, after), by_verdict=by_verdict, by_attack_type=by_attack,
        benign_denials_released=int(np.sum(ben & (before == 2) & (after < 2))),
        malicious_newly_allowed=int(np.sum(mal & (before > 0) & (after == 0))),
        malicious_newly_denied=int(np.sum(mal & (before < 2) & (after == 2))),
        benign_newly_denied=int(np.sum(ben & (before < 2) & (after == 2))),
    )


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    codes, names = pd.factorize(values)
    return codes, list(names)
