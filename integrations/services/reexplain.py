"""Re-explain stored decisions under another model version, in bulk, through the TreeSHAP kernel.

A new model (or a vendor import scored by an earlier one) leaves history explained by the model that
decided it. This recomputes each decision's attributions under ``model`` from the feature values the
decision recorded, and stores them beside the original explanation (``reexplanations``, one row per
decision and model version), never over it: the original is what was shown and audited. Only the
attributions are recomputed; the decision's outcome, policy and counterfactuals stay as decided.

Decisions made by ``model`` itself are skipped (their explanation already is under it), and so are those
re-explained before, so an interrupted run resumes where it stopped. Each chunk commits on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
from pydantic import BaseModel

from integrations.services.deps import ServiceDeps
from risk.catalog import FAMILIES
from risk.explain import ADDITIVITY_TOLERANCE, TreeShap, family_sums
from risk.model import RiskModel, sigmoid
from risk.store.reexplain import count_pending, pending_chunk, save_reexplanations

Progress = Callable[[int, int], None]  # (done, total)


class ReexplainResult(BaseModel):
    """What a re-explanation run did.

    Attributes:
        model_version: the model the decisions were re-explained under.
        engine: ``kernel`` or ``shap`` (the fallback for model shapes the kernel does not handle).
        since: the earliest decision time covered (ISO), or None for all history.
        pending: decisions to re-explain when the run started.
        reexplained: re-explanations stored by this run.
        unexplainable: of those, how many do not add up to the model's output (status ``unexplainable``).
        missing_features: of those, how many lacked a feature the model uses (treated as missing, NaN).
        seconds: wall time of the run.
        rows_per_s: ``reexplained / seconds``.
    """

    model_version: str
    engine: str
    since: str | None
    pending: int
    reexplained: int
    unexplainable: int
    missing_features: int
    seconds: float
    rows_per_s: float


def _vectors(factors: list[list[dict]], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix in ``names`` order from stored factors, and how many names each decision lacked."""
    by = [{f["feature"]: f["value"] for f in fs} for fs in factors]
    absent = np.array([sum(n not in d for n in names) for d in by], dtype=np.int64)
    X = np.array([[d.get(n) for n in names] for d in by], dtype=np.float64).reshape(len(by), len(names))  # None: NaN
    return X, absent


def reexplain_decisions(*, deps: ServiceDeps, model: RiskModel | None = None, since: datetime | None = None,
                        chunk: int = 5000, progress: Progress | None = None) -> ReexplainResult:
    """Re-explain every stored decision since ``since`` under ``model`` (default: the current model).

    Args:
        deps: the service dependencies (store, clock, engine provider for the current model).
        model: the model to explain under; None for the one the engine serves.
        since: only decisions at or after this aware time; None for all.
        chunk: decisions per read, kernel call and transaction.
        progress: called with (done, total) after each chunk.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError("since: must carry a time zone (e.g. 2026-12-01T00:00:00Z)")
    if chunk < 1:
        raise ValueError("chunk: must be at least 1")
    model = model or deps.engine().model
    ts = TreeShap(model)
    since_ms = None if since is None else int(since.timestamp() * 1000)
    t0 = time.perf_counter()
    with deps.sessions() as s:
        total = count_pending(s, model_version=model.version, since_ms=since_ms)
    done = unexplainable = missing = 0
    after = -1
    while True:
        with deps.sessions.begin() as s:
            rows = pending_chunk(s, model_version=model.version, since_ms=since_ms, after_seq=after, limit=chunk)
            if not rows:
                break
            after = rows[-1][0]
            X, absent = _vectors([r[2] or [] for r in rows], model.feature_names)
            phi, margin = ts.contributions(X)
            err = np.abs(ts.base_value + phi.sum(axis=1) - margin)
            top = family_sums(phi).argmax(axis=1)
            risk = sigmoid(margin)
            now_ms = int(deps.clock().timestamp() * 1000)
            save_reexplanations(s, [
                {"decision_id": did, "model_version": model.version, "base_value": ts.base_value,
                 "margin": float(margin[k]), "risk": float(risk[k]), "top_family": FAMILIES[int(top[k])].value,
                 "status": "ok" if err[k] < ADDITIVITY_TOLERANCE else "unexplainable",
                 "additivity_error": float(err[k]), "contributions": phi[k].tolist(),
                 "missing_features": int(absent[k]), "created_ms": now_ms}
                for k, (_, did, _) in enumerate(rows)])
        done += len(rows)
        unexplainable += int((err >= ADDITIVITY_TOLERANCE).sum())
        missing += int((absent > 0).sum())
        if progress:
            progress(done, max(total, done))
    secs = time.perf_counter() - t0
    return ReexplainResult(model_version=model.version, engine=ts.engine,
                           since=None if since is None else since.isoformat(), pending=total, reexplained=done,
                           unexplainable=unexplainable, missing_features=missing, seconds=round(secs, 3),
                           rows_per_s=round(done / secs, 1) if secs > 0 else 0.0)
