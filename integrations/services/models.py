"""Use cases over risk-model versions: train a candidate from the store, start it in shadow, propose its
promotion with the replay as evidence (POL-EXC-007 §9). Approval goes through the one approval path
(``glassgate approve``, the API, Slack), and the built-in adapter applies it (risk.registry)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from agent.approval import Kind
from agent.proposals import ProposalRecord, create
from integrations.services.deps import ServiceDeps
from risk import registry
from risk.audit import AuditKind
from risk.features import batch_features
from risk.model import RiskModel, load_model, train
from risk.store.schema import ModelVersionRow
from risk.synth import generate_world
from risk.training import evaluate, fit_rows, time_split
from risk.trainworld import TrainingMix

PRIOR_VERDICTS = 500  # verdicts at which the customer's own labels carry half of the training weight


class ProposalRefusedError(ValueError):
    """The promotion cannot be proposed; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class TrainedCandidate(BaseModel):
    version: str
    status: str
    live: str
    decisions: int
    verdicts: int
    malicious: int
    benign: int
    prior_rows: int
    verdict_weight_share: float
    card_path: str


def _now_ms(deps: ServiceDeps) -> int:
    return int(deps.clock().timestamp() * 1000)


def _live(deps: ServiceDeps) -> RiskModel:
    """The live model: the registry's, or the engine's current one (registered as live on first use)."""
    with deps.sessions.begin() as s:
        live = registry.current(s, "live")
        if live is None:
            model = deps.engine().model
            registry.register(s, model, status="live", now_ms=_now_ms(deps))
            return model
    return load_model(deps.settings.models_dir / live)


def train_from_store(*, deps: ServiceDeps, prior_users: int = 120, prior_days: int = 14, seed: int = 7,
                     max_iter: int = 200) -> TrainedCandidate:
    """Train a candidate on stored decisions with analyst verdicts, the synthetic prior weighted in while
    verdicts are few, write its card and start it in shadow (it scores beside the live model, deciding nothing).

    The verdicts' share of the training weight is ``n / (n + PRIOR_VERDICTS)``.
    """
    live = _live(deps)
    with deps.sessions() as s:
        decisions, X_store, verdicts = registry.stored_history(s)
    keep = [i for i, d in enumerate(decisions) if d.decision_id in verdicts]
    y_store = np.array([1 if verdicts[decisions[i].decision_id][0] == "malicious" else 0 for i in keep], dtype=np.int8)
    X_v = X_store[keep] if keep else np.zeros((0, len(live.feature_names)))
    world = generate_world(users=prior_users, days=prior_days, seed=seed)
    X_w = batch_features(world.events)
    split = time_split(world, test_days=3)
    X_p, y_p = fit_rows(world, X_w, split, mix=TrainingMix(), test_days=3)
    n_v = len(keep)
    share = n_v / (n_v + PRIOR_VERDICTS)
    w_v = share * len(y_p) / ((1 - share) * n_v) if n_v else 0.0
    X_fit = np.vstack([X_p, X_v]) if n_v else X_p
    y_fit = np.concatenate([y_p, y_store]) if n_v else y_p
    weights = np.concatenate([np.ones(len(y_p)), np.full(n_v, w_v)])
    model = train(X_fit, y_fit, params={"max_iter": max_iter}, sample_weight=weights)
    later = world.events[split.test].reset_index(drop=True)
    model.card.update({
        "test_metrics": evaluate(model, X_w[split.test], later, deps.policy),
        "from_store": {"decisions": len(decisions), "verdicts": n_v, "malicious": int(y_store.sum()),
                       "benign": int(n_v - y_store.sum()), "prior_rows": int(len(y_p)),
                       "verdict_weight_share": round(share, 4), "prior_world": {"users": prior_users,
                                                                               "days": prior_days, "seed": seed},
                       "live_at_training": live.version},
    })
    out = model.save(deps.settings.models_dir)
    status = "shadow"
    with deps.sessions.begin() as s:
        registry.register(s, model, status=status, now_ms=_now_ms(deps))
        deps.ledger.append(s, kind=AuditKind.MODEL_VERSION, subject_id=model.version, at=deps.clock(),
                           payload={"version": model.version, "status": status, "from_store": model.card["from_store"]})
    return TrainedCandidate(version=model.version, status=status, live=live.version, decisions=len(decisions),
                            verdicts=n_v, malicious=int(y_store.sum()), benign=int(n_v - y_store.sum()),
                            prior_rows=int(len(y_p)), verdict_weight_share=share, card_path=str(out / "card.json"))


def propose_promotion(*, deps: ServiceDeps, version: str, requested_by: str, reason: str) -> ProposalRecord:
    """Propose making the shadow candidate ``version`` live, with the replay over stored history and the card
    diff as evidence. Refused (nothing stored) when it is not the shadow candidate or when it would newly
    allow a decision an analyst confirmed malicious."""
    live = _live(deps)
    with deps.sessions.begin() as s:
        row = s.get(ModelVersionRow, version)
        if row is None or row.status != "shadow":
            raise ProposalRefusedError("version", f"{version} is not the shadow candidate "
                                       f"({'unknown' if row is None else row.status})")
        candidate = load_model(deps.settings.models_dir / version)
        evidence: dict[str, Any] = {"replay": registry.replay(s, candidate), "live": live.version,
                                    "card_diff": registry.card_diff(live.card, candidate.card)}
        if not evidence["replay"]["approvable"]:
            raise ProposalRefusedError("version", f"{version} would newly allow "
                                       f"{evidence['replay']['malicious_newly_allowed']} decisions confirmed malicious")
        return create(s, kind=Kind.PROMOTE_MODEL, payload={"version": version, "reason": reason}, evidence=evidence,
                      requested_by=requested_by, rules=deps.rules, ledger=deps.ledger, clock=deps.clock)
