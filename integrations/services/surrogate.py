"""A surrogate of a vendor's decisions, for vendors that state no reasons: a small decision tree fitted on
glassgate's mapped features of stored vendor decisions, its fidelity measured on a *later* held-out split
(overall and per class), written to a card, and printed beside every explanation it gives. Below the
configured fidelity it refuses to explain, and says why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
from pydantic import BaseModel
from sklearn.tree import DecisionTreeClassifier
from sqlalchemy import select

from integrations.services.deps import ServiceDeps
from risk.catalog import BY_NAME, FEATURE_NAMES
from risk.explain import feature_vector
from risk.store.schema import ExplanationRow
from risk.store.vendor import VendorObservationRow

MIN_EXAMPLES = 30
HELD_OUT = 0.3  # the latest 30% of decisions, by time


class SurrogateError(ValueError):
    """No surrogate can be trained or used; the message says why."""


class SurrogateCard(BaseModel):
    vendor: str
    trained_at: str
    examples: int
    train: int
    held_out: int
    held_out_from: str  # the first instant of the held-out split (UTC)
    fidelity: float  # agreement with the vendor on the held-out split
    per_class: dict[str, float]  # recall of each vendor outcome on the held-out split
    support: dict[str, int]
    max_depth: int


class SurrogateExplanation(BaseModel):
    decision_id: str
    status: Literal["explained", "refused"]
    vendor_outcome: str
    surrogate_outcome: str | None = None
    path: list[str] = []
    fidelity_line: str
    reason: str | None = None


def _dir(deps: ServiceDeps, vendor: str) -> Path:
    return Path(deps.settings.home) / "surrogates" / vendor


def _rows(deps: ServiceDeps, vendor: str) -> list[tuple[str, int, str, dict[str, Any]]]:
    with deps.sessions() as s:
        return [(d, t, o, b) for d, t, o, b in s.execute(
            select(VendorObservationRow.decision_id, VendorObservationRow.ts_ms, VendorObservationRow.outcome,
                   ExplanationRow.body).join(ExplanationRow, ExplanationRow.decision_id == VendorObservationRow.decision_id)
            .where(VendorObservationRow.vendor == vendor, VendorObservationRow.failure.is_(False))
            .order_by(VendorObservationRow.ts_ms, VendorObservationRow.decision_id))]


def _x(body: dict[str, Any]) -> np.ndarray:
    return np.nan_to_num(feature_vector(body["factors"]), nan=-1.0)  # missing as its own value, never benign


def train_surrogate(*, deps: ServiceDeps, vendor: str, max_depth: int = 4) -> SurrogateCard:
    """Fit the surrogate on stored history (earlier 70% by time) and card it on the later 30%."""
    rows = _rows(deps, vendor)
    if len(rows) < MIN_EXAMPLES:
        raise SurrogateError(f"{len(rows)} stored {vendor} decisions; a surrogate needs at least {MIN_EXAMPLES}")
    X = np.array([_x(b) for *_, b in rows])
    y = np.array([o for _, _, o, _ in rows])
    cut = int(len(rows) * (1 - HELD_OUT))
    if len(set(y[:cut])) < 2:
        raise SurrogateError(f"the earlier {cut} {vendor} decisions have one outcome only ({y[0]}): nothing to learn")
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=3, random_state=0).fit(X[:cut], y[:cut])
    pred = tree.predict(X[cut:])
    truth = y[cut:]
    per_class = {c: round(float(np.mean(pred[truth == c] == c)), 4) for c in sorted(set(truth))}
    card = SurrogateCard(vendor=vendor, trained_at=deps.clock().strftime("%Y-%m-%dT%H:%M:%SZ"), examples=len(rows),
                         train=cut, held_out=len(rows) - cut,
                         held_out_from=datetime.fromtimestamp(rows[cut][1] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         fidelity=round(float(np.mean(pred == truth)), 4), per_class=per_class,
                         support={c: int(np.sum(truth == c)) for c in sorted(set(truth))}, max_depth=max_depth)
    out = _dir(deps, vendor)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(tree, out / "tree.joblib")
    (out / "card.json").write_text(card.model_dump_json(indent=2))
    return card


def fidelity_line(card: SurrogateCard) -> str:
    classes = ", ".join(f"{c} {v:.0%} (n={card.support[c]})" for c, v in card.per_class.items())
    return (f"surrogate fidelity {card.fidelity:.0%} on {card.held_out} later held-out {card.vendor} decisions "
            f"(from {card.held_out_from}); per class: {classes}")


def explain_by_surrogate(*, deps: ServiceDeps, decision_id: str, vendor: str,
                         min_fidelity: float | None = None) -> SurrogateExplanation:
    """Why the surrogate thinks the vendor decided as it did (the tree's path), with its fidelity; refused
    when the card's fidelity is below ``min_fidelity`` (settings' surrogate_min_fidelity by default)."""
    d = _dir(deps, vendor)
    if not (d / "card.json").is_file():
        raise SurrogateError(f"no {vendor} surrogate: run `glassgate surrogate train --vendor {vendor}`")
    card = SurrogateCard.model_validate(json.loads((d / "card.json").read_text()))
    floor = deps.settings.surrogate_min_fidelity if min_fidelity is None else min_fidelity
    row = next((r for r in _rows(deps, vendor) if r[0] == decision_id), None)
    if row is None:
        raise SurrogateError(f"{decision_id} is not a stored {vendor} decision")
    line = fidelity_line(card)
    if card.fidelity < floor:
        return SurrogateExplanation(decision_id=decision_id, status="refused", vendor_outcome=row[2],
                                    fidelity_line=line, reason=f"fidelity {card.fidelity:.0%} is below the configured "
                                    f"{floor:.0%}: the surrogate does not mimic {vendor} well enough to explain it")
    tree: DecisionTreeClassifier = joblib.load(d / "tree.joblib")
    x = _x(row[3]).reshape(1, -1)
    t = tree.tree_
    path = []
    for node in tree.decision_path(x).indices:
        if t.children_left[node] == t.children_right[node]:
            continue
        f, thr = FEATURE_NAMES[t.feature[node]], float(t.threshold[node])
        v = float(x[0, t.feature[node]])
        label = BY_NAME[f].label
        path.append(f"{label} {'missing' if v == -1.0 else f'{v:g}'} {'<=' if v <= thr else '>'} {thr:g}")
    return SurrogateExplanation(decision_id=decision_id, status="explained", vendor_outcome=row[2],
                                surrogate_outcome=str(tree.predict(x)[0]), path=path, fidelity_line=line)
