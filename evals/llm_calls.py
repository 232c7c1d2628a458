"""What the LLM narrator's calls cost and how they ended, over an eval run: fallback reasons by kind, prompt
and completion tokens, and latency (p50/p95), per narrator. Prompt tokens are the server's count when it
sent one (``usage.prompt_tokens``), else agent.prompts' estimate (one token per 3 characters)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


def _pq(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "max": float(max(values))}


def llm_call_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per LLM narrator: calls, fallbacks by reason, tokens and seconds."""
    out: dict[str, Any] = {}
    names = sorted({n for r in records for n in r["narrators"] if n != "offline"})
    for name in names:
        calls = [c for r in records for c in r["narrators"][name].get("calls", [])]
        usage = [c["usage"] for c in calls if c.get("usage")]
        prompt = [u["prompt_tokens"] if u.get("prompt_tokens") is not None else u["approx_prompt_tokens"] for u in usage]
        out[name] = {"calls": len(calls), "fallbacks": dict(Counter(c["fallback"] or "none" for c in calls)),
                     "prompt_tokens": _pq(prompt), "approx_prompt_tokens": _pq([u["approx_prompt_tokens"] for u in usage]),
                     "completion_tokens": _pq([u["completion_tokens"] for u in usage
                                               if u.get("completion_tokens") is not None]),
                     "seconds": _pq([u["seconds"] for u in usage]),
                     "shapes": dict(Counter(u.get("shape") or "none" for u in usage))}
    return out


def markdown(stats: dict[str, Any]) -> list[str]:
    def f(q: dict[str, float | None], fmt: str) -> str:
        return " / ".join("n/a" if q[k] is None else format(q[k], fmt) for k in ("p50", "p95"))

    lines: list[str] = []
    for name, s in stats.items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["fallbacks"].items()))
        lines += ["", f"LLM calls of `{name}`: {s['calls']}; ended: {reasons}; answer shapes: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(s["shapes"].items())), "",
                  "| per call | p50 / p95 |", "|---|---:|",
                  f"| prompt tokens | {f(s['prompt_tokens'], '.0f')} |",
                  f"| prompt tokens, our estimate | {f(s['approx_prompt_tokens'], '.0f')} |",
                  f"| completion tokens | {f(s['completion_tokens'], '.0f')} |",
                  f"| latency (s) | {f(s['seconds'], '.1f')} |"]
    return lines
