"""Geometry of the dashboard's charts, drawn as inline SVG by the templates (no script, nothing to fetch):
the waterfall of a decision's probability points, a session's risk over its steps, small bar charts of
counts and the heat map of a replay's outcome matrix."""

from __future__ import annotations

from typing import Any

from risk.catalog import FAMILIES

FAMILY_LABEL = {"identity": "Identity confidence", "device": "Device posture", "behavior": "Session behavior",
                "network": "Network context"}
ROW = 22  # px per waterfall row
TOP = 24  # room above the rows for the thresholds' labels
LABEL_CHARS = 52
LABEL_W, PLOT_W, VALUE_W = 330, 460, 80


def _clip(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _x(risk: float) -> float:
    return LABEL_W + max(0.0, min(1.0, risk)) * PLOT_W


def waterfall(explanation: Any, *, step_up_at: float, deny_at: float) -> dict[str, Any]:
    """Rows from the base risk, family by family (each family's features by size), to the decision's risk.

    Each feature row carries its ``points`` and the running risk before (``start``) and after (``end``);
    ``base_risk + sum(points) == risk`` (the explanation's own additivity), so the last bar ends at the risk.
    """
    rows: list[dict[str, Any]] = [{"kind": "base", "label": "Base risk (the model's average)", "start": 0.0,
                                   "end": explanation.base_risk, "points": explanation.base_risk}]
    at = explanation.base_risk
    order = sorted((f.value for f in FAMILIES), key=lambda fam: -abs(explanation.family_points.get(fam, 0.0)))
    for fam in order:
        members = sorted((f for f in explanation.factors if f.family == fam), key=lambda f: (-abs(f.points), f.feature))
        if not members:
            continue
        total = explanation.family_points.get(fam, 0.0)
        rows.append({"kind": "family", "label": FAMILY_LABEL.get(fam, fam), "family": fam, "start": at,
                     "end": at + total, "points": total})
        for f in members:
            rows.append({"kind": "feature", "label": f.label, "display": f.display, "feature": f.feature,
                         "family": fam, "missing": f.missing, "start": at, "end": at + f.points, "points": f.points})
            at += f.points
    rows.append({"kind": "total", "label": "Risk of this decision", "start": 0.0, "end": explanation.risk,
                 "points": explanation.risk})
    for i, r in enumerate(rows):
        lo, hi = sorted((r["start"], r["end"]))
        text = r["label"] + (f": {r['display']}" if r["kind"] == "feature" else "")
        r.update(y=TOP + i * ROW, x=_x(lo), w=max(1.0, _x(hi) - _x(lo)), text=_clip(text), full=text,
                 direction="up" if r["points"] > 0 else "down" if r["points"] < 0 else "none")
    height = TOP + len(rows) * ROW + 24
    lines = [{"label": f"step-up at {step_up_at:.2f}", "x": _x(step_up_at), "kind": "step_up"},
             {"label": f"deny at {deny_at:.2f}", "x": _x(deny_at), "kind": "deny"}]
    ticks = [{"x": _x(t / 10), "label": f"{t / 10:.1f}"} for t in range(0, 11, 2)]
    return {"rows": rows, "height": height, "width": LABEL_W + PLOT_W + VALUE_W, "lines": lines, "ticks": ticks,
            "label_w": LABEL_W, "plot_w": PLOT_W, "row": ROW}


def bars(counts: dict[str, int], *, width: int = 260) -> dict[str, Any]:
    """A small horizontal bar chart: one row per key, the count written beside its bar."""
    top = max(counts.values(), default=0) or 1
    rows = [{"key": k, "n": n, "y": 4 + i * 20, "w": max(1.0 if n else 0.0, n / top * (width - 150))}
            for i, (k, n) in enumerate(counts.items())]
    return {"rows": rows, "height": 8 + len(rows) * 20, "width": width}


def session_line(steps: list[Any], *, width: int = 860, height: int = 220) -> dict[str, Any]:
    """Risk (0..1, upwards) over a session's steps; steps whose outcome changed are marked."""
    left, right, top, bottom = 48, 16, 14, 34
    n = len(steps)
    span = (width - left - right) / max(1, n - 1)
    pts = []
    for i, s in enumerate(steps):
        x = left + (i * span if n > 1 else (width - left - right) / 2)
        y = top + (1 - s.risk) * (height - top - bottom)
        pts.append({"x": x, "y": y, "step": s, "i": i + 1})
    grid = [{"y": top + (1 - g) * (height - top - bottom), "label": f"{g:.2f}"} for g in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {"points": pts, "polyline": " ".join(f"{p['x']:.1f},{p['y']:.1f}" for p in pts), "grid": grid,
            "width": width, "height": height, "left": left, "right": width - right, "base": height - bottom}


def heatmap(matrix: list[list[int]], *, cell: int = 64) -> dict[str, Any]:
    """The 3x3 before/after outcome matrix: shade by count (the count is written in each cell)."""
    names = ("allow", "step_up", "deny")
    top = max((v for row in matrix for v in row), default=0) or 1
    cells = []
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            level = 0 if v == 0 else 1 + min(4, int(4 * v / top))
            cells.append({"x": 90 + j * cell, "y": 30 + i * cell, "n": v, "level": level, "before": names[i],
                          "after": names[j], "changed": i != j and v > 0})
    return {"cells": cells, "cell": cell, "names": names, "width": 90 + 3 * cell + 10, "height": 30 + 3 * cell + 10}
