"""The eval report: aggregates per scenario type and per narrator, the gate, JSON, a markdown summary and plots.

Written to ``<out>/eval-<UTC timestamp>/`` and copied to ``<out>/latest/``: ``report.json`` (every case's
scores and the aggregates), ``summary.md``, ``cases.jsonl`` and the PNGs (cause recall per type, the deletion
curve, pass rates per narrator).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from evals.llm_calls import llm_call_stats
from evals.llm_calls import markdown as llm_markdown

# name, aggregate it reads, minimum rate
GATE = (("offline faithfulness", ("narrators", "offline", "faithful"), 1.0),
        ("cause recall (top family)", ("explanation", "cause_top_family"), 0.9),
        ("additivity", ("explanation", "additivity"), 1.0),
        ("counterfactual validity", ("explanation", "counterfactual_valid"), 1.0))


def _rate(scores: list[dict[str, Any]]) -> dict[str, Any]:
    app = [s for s in scores if s["passed"] is not None]
    ok = sum(1 for s in app if s["passed"])
    return {"passed": ok, "applicable": len(app), "rate": ok / len(app) if app else None}


def _by_name(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """rows of (scenario, score) -> {name: {"all": rate, "by_type": {scenario: rate}}}."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for scenario, s in rows:
        grouped[s["name"]][scenario].append(s)
    return {name: {"all": _rate([s for v in per.values() for s in v]),
                   "by_type": {k: _rate(v) for k, v in sorted(per.items())}} for name, per in grouped.items()}


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    expl = [(r["case"]["scenario"], s) for r in records for s in r["scores"]]
    names = sorted({n for r in records for n in r["narrators"]})
    narr = {n: _by_name([(r["case"]["scenario"], s) for r in records for s in r["narrators"].get(n, {}).get("scores", [])])
            for n in names}
    curves = [s["data"] for _, s in expl if s["name"] == "deletion_beats_random" and s["passed"] is not None]
    errors = [s["value"] for _, s in expl if s["name"] == "additivity"]
    deletion = {"k": list(range(1, len(curves[0]["top"]) + 1)) if curves else [], "cases": len(curves),
                "top": np.mean([c["top"] for c in curves], axis=0).tolist() if curves else [],
                "random": np.mean([c["random"] for c in curves], axis=0).tolist() if curves else []}
    return {"explanation": _by_name(expl), "narrators": narr, "deletion_curve": deletion,
            "additivity_error": {"max": max(errors, default=None), "mean": float(np.mean(errors)) if errors else None},
            "groups": dict(sorted(Counter(r["case"]["group"] for r in records).items())),
            "llm_calls": llm_call_stats(records)}


def gate(agg: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, path, target in GATE:
        node: Any = agg
        for p in path:
            node = (node or {}).get(p)
        rate = (node or {}).get("all", {}).get("rate")
        out.append({"name": name, "value": rate, "target": target, "passed": rate is not None and rate >= target})
    return out


def _pct(r: dict[str, Any] | None) -> str:
    if not r or r["rate"] is None:
        return "n/a"
    return f"{r['rate']:.1%} ({r['passed']}/{r['applicable']})"


def summary_markdown(report: dict[str, Any]) -> str:
    agg, meta = report["aggregates"], report["meta"]
    wc = meta["world_cases"]
    lines = [f"# glassgate eval: {meta['cases']} cases, seed {meta['seed']}, model {meta['model_version']}", "",
             f"{wc['sampled']} world cases sampled of {wc['requested']} requested"
             + (f" (the world had too few of: {', '.join(f'{k} -{v}' for k, v in wc['short'].items())})" if wc["short"] else "")
             + f", plus {meta['edge_cases']} hand-written edge cases; narrators: {', '.join(meta['narrators'])}.", "",
             "| evaluator | all cases |", "|---|---:|"]
    lines += [f"| {name} | {_pct(v['all'])} |" for name, v in agg["explanation"].items()]
    for narrator, per in agg["narrators"].items():
        lines += ["", f"| narrator `{narrator}` | all cases |", "|---|---:|"]
        lines += [f"| {name} | {_pct(v['all'])} |" for name, v in per.items()]
    key = [("cause_top_family", "explanation", None), ("cause_in_top3_drivers", "explanation", None),
           ("deletion_beats_random", "explanation", None), ("counterfactual_valid", "explanation", None)]
    key += [(n, "narrators", narrator) for narrator in agg["narrators"] for n in ("faithful", "complete", "citation_accurate")]
    types = sorted({t for name, where, nar in key for t in _node(agg, where, nar, name).get("by_type", {})})
    head = [f"{n}" + (f" ({nar})" if nar else "") for n, _, nar in key]
    lines += ["", "| scenario type | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for t in types:
        cells = [_pct(_node(agg, where, nar, name).get("by_type", {}).get(t)) for name, where, nar in key]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    d = agg["deletion_curve"]
    if d["k"]:
        lines += ["", f"Deletion curve (mean risk drop over {d['cases']} cases, masking to training medians):", "",
                  "| k | top-k drivers | k random features |", "|---:|---:|---:|"]
        lines += [f"| {k} | {a:.3f} | {b:.3f} |" for k, a, b in zip(d["k"], d["top"], d["random"], strict=True)]
    lines += ["", f"Additivity error: max {agg['additivity_error']['max']:.1e}, mean {agg['additivity_error']['mean']:.1e}.",
              "", "| gate | value | target | |", "|---|---:|---:|---|"]
    lines += [f"| {g['name']} | {_share(g['value'])} | {g['target']:.0%} | {'pass' if g['passed'] else 'FAIL'} |"
              for g in report["gate"]]
    lines += llm_markdown(agg.get("llm_calls") or {})
    if report.get("stress"):
        from evals.stress import stress_markdown

        lines += ["", "Stress suite per family (the model alone decides the threshold outcome; the final outcome "
                  "adds the hard rules):", "", stress_markdown(report["stress"])]
    lines.append(_calibration_markdown((meta.get("model_card") or {}).get("calibration")))
    return "\n".join(lines)


def _share(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _node(agg: dict[str, Any], where: str, narrator: str | None, name: str) -> dict[str, Any]:
    base = agg[where] if narrator is None else agg[where].get(narrator, {})
    return base.get(name, {})


# ----------------------------------------------------------------------------- plots


def _plots(agg: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    top = agg["explanation"].get("cause_top_family", {}).get("by_type", {})
    top3 = agg["explanation"].get("cause_in_top3_drivers", {}).get("by_type", {})
    types = [t for t, r in top.items() if r["rate"] is not None]
    if types:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        pos = np.arange(len(types))
        ax.bar(pos - 0.2, [top[t]["rate"] for t in types], 0.4, label="cause = top family")
        ax.bar(pos + 0.2, [top3[t]["rate"] or 0 for t in types], 0.4, label="cause among top-3 drivers")
        for p, t in zip(pos, types, strict=True):
            ax.text(float(p), 1.02, f"n={top[t]['applicable']}", ha="center", fontsize=8)
        ax.axhline(0.9, color="grey", ls="--", lw=1, label="gate 90%")
        ax.set_xticks(pos, types, rotation=30, ha="right")
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("share of cases")
        ax.set_title("Cause recall per scenario type")
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "cause_recall_by_type.png", dpi=110)
        plt.close(fig)
        written.append("cause_recall_by_type.png")
    d = agg["deletion_curve"]
    if d["k"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(d["k"], d["top"], "o-", label="mask top-k drivers")
        ax.plot(d["k"], d["random"], "s--", label="mask k random features")
        ax.set_xticks(d["k"])
        ax.set_xlabel("k features masked to the training median")
        ax.set_ylabel("mean drop in risk")
        ax.set_title(f"Deletion curve ({d['cases']} cases)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "deletion_curve.png", dpi=110)
        plt.close(fig)
        written.append("deletion_curve.png")
    series = {"explanation": agg["explanation"], **{f"narrator {n}": v for n, v in agg["narrators"].items()}}
    names = [(g, n) for g, per in series.items() for n, v in per.items() if v["all"]["rate"] is not None]
    if names:
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.2))
        rates = [series[g][n]["all"]["rate"] for g, n in names]
        ax.barh([f"{n} ({g})" for g, n in names], rates)
        for i, (r, (g, n)) in enumerate(zip(rates, names, strict=True)):
            ax.text(0.01, i, f"{r:.0%} of {series[g][n]['all']['applicable']}", va="center", color="white", fontsize=8)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("pass rate over applicable cases")
        ax.set_title("Evaluator pass rates")
        fig.tight_layout()
        fig.savefig(out / "pass_rates.png", dpi=110)
        plt.close(fig)
        written.append("pass_rates.png")
    return written


def stress_gate(stress: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One gate line per family of the stress suite: every case of the family must pass."""
    if not stress:
        return []
    out = []
    for fam, f in stress["families"].items():
        total = f["anomaly"]["total"] + f["variation"]["total"]
        done = f["anomaly"]["passed"] + f["variation"]["passed"]
        out.append({"name": f"stress: {fam}", "value": done / total if total else None, "target": 1.0,
                    "passed": bool(total) and done == total})
    return out


def _calibration_markdown(cal: dict[str, Any] | None) -> str:
    if not cal:
        return ""
    lines = ["", f"Calibration on the later split: Brier {cal['brier']:.4f}.", "",
             "| risk bin | events | mean risk | attack share |", "|---|---:|---:|---:|"]
    lines += [f"| {r['lo']:.2f}-{r['hi']:.2f} | {r['events']} | {r['mean_risk']:.3f} | {r['attack_share']:.3f} |"
              for r in cal["reliability"]]
    lines += ["", "| attack type | events | Brier (with benign) | Brier (attack events) | mean risk |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['events']} | {v['brier']:.4f} | {v['brier_attack_only']:.4f} | {v['mean_risk']:.3f} |"
              for k, v in cal["per_attack_type"].items()]
    return "\n".join(lines)


def write_report(*, records: list[dict[str, Any]], meta: dict[str, Any], out_root: Path,
                 stress: dict[str, Any] | None = None) -> dict[str, Any]:
    """Aggregate, gate and write everything; returns the report (with ``paths``).

    ``stress`` (from :func:`evals.stress.run_stress`) adds one gate line per family and its table.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_root / f"eval-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = out_root / f"eval-{stamp}-{n}"
    out.mkdir(parents=True)
    agg = aggregate(records)
    report: dict[str, Any] = {"meta": meta, "aggregates": agg, "gate": gate(agg) + stress_gate(stress),
                              "records": records, "stress": stress}
    plots = _plots(agg, out)
    cal = (meta.get("model_card") or {}).get("calibration")
    if cal and cal.get("reliability"):
        from risk.calibration import plot_reliability

        plot_reliability(cal, out / "reliability.png")
        plots.append("reliability.png")
    report["plots"] = plots
    latest = out_root / "latest"
    report["paths"] = {"dir": str(out), "latest": str(latest)}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "summary.md").write_text(summary_markdown(report) + "\n\n" + "".join(
        f"![{p}]({p})\n" for p in report["plots"]))
    (out / "cases.jsonl").write_text("".join(json.dumps(r["case"]) + "\n" for r in records))
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(out, latest)
    return report
