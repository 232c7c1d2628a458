"""Evaluators: each returns named scores for one case; ``passed`` is None when a check does not apply.

They read plain records (the decision, its explanation, the narrative returned by
``integrations.actions.explain_decision``, the session timeline) so that a test can hand them a
deliberately wrong narrative or explanation and see them fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.completeness import OUTCOME_WORDS, binding_passages, drivers, threshold_of
from agent.completeness import has_phrase as _has
from risk.catalog import FEATURE_NAMES
from risk.explain import ADDITIVITY_TOLERANCE, feature_vector
from risk.policy import OUTCOME_RANK, Outcome
from tools.context import ToolContext
from tools.registry import call_tool

MOVED_RISK = 0.05  # a session step "changed something" when its risk moved this much or its outcome changed


@dataclass(frozen=True)
class Score:
    name: str
    passed: bool | None
    value: float | None = None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- explanation


def cause_recall(*, causes: list[str], explanation: dict[str, Any]) -> list[Score]:
    """The labelled cause is the top family, and every cause has a driver among the top three."""
    if not causes:
        return [Score("cause_top_family", None), Score("cause_in_top3_drivers", None)]
    top = explanation["top_family"]
    ups = sorted((f for f in explanation["factors"] if f["contribution"] > 0), key=lambda f: -f["contribution"])
    fams = [f["family"] for f in ups[:3]]  # the explanation's own top drivers: the three largest pushes up
    missing = [c for c in causes if c not in fams]
    return [Score("cause_top_family", top in causes, detail=f"top family {top}; cause {'/'.join(causes)}"),
            Score("cause_in_top3_drivers", not missing,
                  detail=f"top-3 driver families {fams}" + (f"; missing {missing}" if missing else ""))]


def additivity(*, explanation: dict[str, Any], model_margin: float) -> Score:
    """|base + sum(phi) - margin| from the stored explanation, and its margin against the model's own output."""
    stored = abs(explanation["base_value"] + sum(f["contribution"] for f in explanation["factors"]) - explanation["margin"])
    drift = abs(explanation["margin"] - model_margin)
    err = max(stored, drift)
    return Score("additivity", err < ADDITIVITY_TOLERANCE, value=err,
                 detail=f"additivity error {stored:.1e}, stored margin vs model {drift:.1e}")


def deletion(*, x: np.ndarray, phi: np.ndarray, risk_fn: Callable[[np.ndarray], np.ndarray], baseline: np.ndarray,
             max_k: int, draws: int, rng: np.random.Generator) -> Score:
    """Masking the top-k drivers (largest contributions) to the baseline lowers risk more than k random features.

    ``data`` holds the per-k risk drops (``top`` and the mean over ``draws`` random k-subsets, ``random``);
    passes when the area under the top-k curve exceeds the random one.
    """
    order = np.argsort(-phi, kind="stable")
    rows = [x]
    for k in range(1, max_k + 1):
        rows.append(_masked(x, order[:k], baseline))
        rows += [_masked(x, rng.choice(len(x), size=k, replace=False), baseline) for _ in range(draws)]
    risks = risk_fn(np.array(rows))
    r0, rest = risks[0], risks[1:].reshape(max_k, draws + 1)
    top = (r0 - rest[:, 0]).tolist()
    rand = (r0 - rest[:, 1:].mean(axis=1)).tolist()
    gap = float(np.sum(top) - np.sum(rand))
    return Score("deletion_beats_random", gap > 0, value=gap, detail=f"top-k drops {np.round(top, 3).tolist()}, "
                 f"random {np.round(rand, 3).tolist()}", data={"top": top, "random": rand})


def _masked(x: np.ndarray, idx: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[idx] = baseline[idx]
    return y


def explanation_vector(explanation: dict[str, Any]) -> np.ndarray:
    return feature_vector(explanation["factors"])


def stable_drivers(*, phi: np.ndarray, phi_twin: np.ndarray, x: np.ndarray, x_twin: np.ndarray, k: int = 3) -> Score:
    """A tiny irrelevant change does not reorder the top-k drivers."""
    a = [FEATURE_NAMES[i] for i in np.argsort(-phi, kind="stable")[:k] if phi[i] > 0]
    b = [FEATURE_NAMES[i] for i in np.argsort(-phi_twin, kind="stable")[:k] if phi_twin[i] > 0]
    moved = [FEATURE_NAMES[i] for i in range(len(x)) if not (x[i] == x_twin[i] or (np.isnan(x[i]) and np.isnan(x_twin[i])))]
    return Score("stable_top_drivers", a == b, detail=f"{a} vs {b}; features changed by the twin: {moved}")


# ----------------------------------------------------------------------------- counterfactuals


def counterfactual_validity(*, ctx: ToolContext, decision: dict[str, Any], explanation: dict[str, Any]) -> list[Score]:
    """Re-score every suggested change with the ``what_if`` tool: it must reach the outcome it promises,
    an outcome better than the decision's."""
    if decision["outcome"] == Outcome.ALLOW.value:
        return [Score("counterfactual_offered", None), Score("counterfactual_valid", None)]
    cfs = explanation["counterfactuals"]
    offered = Score("counterfactual_offered", bool(cfs or explanation.get("counterfactual_note")),
                    detail=f"{len(cfs)} counterfactual(s)" + ("" if cfs else f"; note: {explanation.get('counterfactual_note')}"))
    if not cfs:
        return [offered, Score("counterfactual_valid", None)]
    bad = []
    for cf in cfs:
        out = call_tool(ctx, "what_if", {"decision_id": decision["decision_id"],
                                         "actions": [a["action"] for a in cf["actions"]]})
        got = out.after.outcome.value
        better = OUTCOME_RANK[Outcome(got)] < OUTCOME_RANK[Outcome(decision["outcome"])]
        if got != cf["outcome_after"] or not better:
            bad.append(f"{'+'.join(a['action'] for a in cf['actions'])}: promised {cf['outcome_after']}, re-scored {got}")
    return [offered, Score("counterfactual_valid", not bad, detail="; ".join(bad) or f"{len(cfs)} flip(s) re-scored")]


# ----------------------------------------------------------------------------- narratives


def faithfulness(*, narrative: dict[str, Any]) -> list[Score]:
    """Every claim passed the verifier; for an LLM narrator, its own draft did (no fallback)."""
    fb = narrative.get("fallback_from")
    return [Score("faithful", bool(narrative["verified"]) and fb is None,
                  detail="; ".join(f"{f['check']}: {f['detail']}" for f in (fb or {}).get("failures", [])
                                   + narrative.get("verification_failures", []))[:400]),
            Score("verified_after_fallback", bool(narrative["verified"]))]


def citation_accuracy(*, narrative: dict[str, Any], decision: dict[str, Any]) -> Score:
    """The cited passage is the one that defines the threshold or rule that set the outcome (and nothing unrelated)."""
    required, allowed = binding_passages(decision)
    cited = {(c["policy_id"], c["version"], c["section"]) for c in narrative["citations"]}
    missing, stray = required - cited, cited - allowed
    return Score("citation_accurate", not missing and not stray,
                 detail=(f"missing {sorted(missing)} " if missing else "") + (f"unrelated {sorted(stray)}" if stray else ""))


def completeness(*, narrative: dict[str, Any], decision: dict[str, Any], explanation: dict[str, Any],
                 timeline: dict[str, Any] | None) -> list[Score]:
    """The narrative names the outcome, the risk against the threshold, the top drivers, the policy passage and,
    for a session in which something changed, what changed."""
    text = narrative["text"]
    thr = threshold_of(decision)
    scores = [Score("names_outcome", any(_has(text, w) for w in OUTCOME_WORDS[decision["outcome"]])),
              Score("names_risk_vs_threshold", f"{decision['risk']:.2f}" in text and f"{thr:.2f}" in text,
                    detail=f"risk {decision['risk']:.2f}, threshold {thr:.2f}")]
    missing = [f["label"] for f in drivers(explanation) if not _has(text, f["label"])]
    scores.append(Score("names_top_drivers", not missing, detail=f"missing {missing}" if missing else ""))
    required, _ = binding_passages(decision)
    unnamed = [f"{p} §{s}" for p, _v, s in sorted(required) if not (p in text and f"§{s}" in text)]
    scores.append(Score("names_policy_passage", not unnamed, detail=f"missing {unnamed}" if unnamed else ""))
    moved = [s for s in (timeline or {}).get("steps", [])[1:]
             if (s["outcome_changed"] or abs(s["risk_delta"]) >= MOVED_RISK) and s["changes"]]
    if moved:
        named = [s["changes"][0]["label"] for s in moved if _has(text, s["changes"][0]["label"])]
        scores.append(Score("names_session_change", bool(named),
                            detail=f"{len(moved)} step(s) moved; named {named}"))
    else:
        scores.append(Score("names_session_change", None))
    applicable = [s.passed for s in scores if s.passed is not None]
    return [*scores, Score("complete", all(applicable))]


def same_narrative(*, first: dict[str, Any], second: dict[str, Any]) -> Score:
    """The same decision explained twice gives the same narrative (text, claims and citations)."""
    keys = ("text", "claims", "citations")
    diff = [k for k in keys if first[k] != second[k]]
    return Score("same_narrative_twice", not diff, detail=f"differs in {diff}" if diff else "")


def draft_scores(*, drafts: tuple[dict[str, Any] | None, dict[str, Any] | None], shown: dict[str, Any],
                 decision: dict[str, Any], explanation: dict[str, Any], timeline: dict[str, Any] | None) -> list[Score]:
    """An LLM narrator scored on its own drafts (before verification replaced them): did the draft parse, did it
    verify, were its citations and contents complete, were two drafts of one case the same."""
    first, second = drafts
    reason = (shown.get("fallback_from") or {}).get("reason", "")
    if first is None:
        return [Score("draft_parsed", False, detail=reason), Score("draft_verified", False, detail=reason),
                Score("draft_citation_accurate", False), Score("draft_complete", False),
                Score("draft_same_twice", second is None)]
    fails = "; ".join(f"{f['check']}: {f['detail']}" for f in first["verification_failures"])[:400]
    done = completeness(narrative=first, decision=decision, explanation=explanation, timeline=timeline)[-1]
    same = second is not None and same_narrative(first=first, second=second).passed
    return [Score("draft_parsed", True), Score("draft_verified", bool(first["verified"]), detail=fails),
            Score("draft_citation_accurate", citation_accuracy(narrative=first, decision=decision).passed),
            Score("draft_complete", done.passed), Score("draft_same_twice", bool(same))]


# ----------------------------------------------------------------------------- edge-case expectations


def expectations(*, expect: dict[str, Any], decision: dict[str, Any], explanation: dict[str, Any]) -> Score:
    """What a hand-written edge case says its decision must show."""
    problems = []
    if expect.get("outcome") and decision["outcome"] != expect["outcome"]:
        problems.append(f"outcome {decision['outcome']}, expected {expect['outcome']}")
    if expect.get("rule") and expect["rule"] not in {r["rule_id"] for r in decision.get("rules", [])}:
        problems.append(f"rule {expect['rule']} did not match")
    if expect.get("exception") is not None and bool(decision.get("exception")) != expect["exception"]:
        problems.append(f"exception in force: {bool(decision.get('exception'))}, expected {expect['exception']}")
    if expect.get("note_prefix") and not any(n.startswith(expect["note_prefix"]) for n in explanation["notes"]):
        problems.append(f"no note starting {expect['note_prefix']!r}")
    if not any(v is not None for v in expect.values()):
        return Score("expectations_met", None)
    return Score("expectations_met", not problems, detail="; ".join(problems))

