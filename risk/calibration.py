"""Calibration you can state: a reliability curve and Brier scores, overall and per attack type.

A risk of 0.3 should mean that about three in ten such events are attacks; thresholds in policy are
written in that currency. The reliability curve bins the later split's risks and compares each bin's mean
risk with its observed attack share; the Brier score is the mean squared gap between risk and label.
Per attack type, the Brier score is taken over that type's events together with every benign event, so
each type's figure says how well the model separates and calibrates that attack against ordinary work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BINS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.4, 0.6, 0.8, 0.9, 0.97, 1.0)  # finer where the thresholds live


def brier(risk: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.mean((risk - y) ** 2)) if len(y) else None


def reliability(risk: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Per bin of :data:`BINS`: events, mean risk, observed attack share (empty bins left out)."""
    idx = np.clip(np.searchsorted(BINS, risk, side="right") - 1, 0, len(BINS) - 2)
    out = []
    for b in range(len(BINS) - 1):
        sel = idx == b
        if sel.any():
            out.append({"lo": BINS[b], "hi": BINS[b + 1], "events": int(sel.sum()),
                        "mean_risk": float(risk[sel].mean()), "attack_share": float(y[sel].mean())})
    return out


def calibration(risk: np.ndarray, y: np.ndarray, scenario: np.ndarray, attack_types: list[str]) -> dict[str, Any]:
    """Reliability curve, overall Brier, and Brier per attack type (that type's events plus all benign)."""
    benign = y == 0
    per_type = {}
    for name in attack_types:
        sel = (scenario == name) & (y == 1)
        if sel.any():
            both = sel | benign
            per_type[name] = {"events": int(sel.sum()), "brier": brier(risk[both], y[both]),
                              "brier_attack_only": brier(risk[sel], y[sel]), "mean_risk": float(risk[sel].mean())}
    return {"brier": brier(risk, y), "reliability": reliability(risk, y), "per_attack_type": per_type}


def plot_reliability(cal: dict[str, Any], path: Path, *, title: str = "reliability on the later split") -> Path:
    """The reliability curve as a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cal["reliability"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    ax.plot([r["mean_risk"] for r in rows], [r["attack_share"] for r in rows], marker="o", label="model")
    for r in rows:
        ax.annotate(str(r["events"]), (r["mean_risk"], r["attack_share"]), fontsize=7, xytext=(3, -9),
                    textcoords="offset points")
    ax.set_xlabel("mean predicted risk (bin)")
    ax.set_ylabel("observed attack share")
    ax.set_title(f"{title}\nBrier {cal['brier']:.4f}; labels: events per bin")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
