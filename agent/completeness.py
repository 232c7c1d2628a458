"""What a narrative about one decision must name to be a reason people can defend: the outcome, the risk
against the threshold that applied, the driver that pushed the risk up most, and the policy passage that
set the outcome. The verifier refuses a draft that leaves any of them out (an LLM draft then falls back to
the deterministic narrative); ``evals`` measures the same parts, with the top three drivers.
"""

from __future__ import annotations

import re
from typing import Any

OUTCOME_WORDS = {"allow": ("allowed", "granted"), "step_up": ("stepped up", "step-up", "challenged"),
                 "deny": ("denied", "blocked", "refused")}
MIN_POINTS = 0.01  # a driver worth naming (the offline narrator's cut-off)

Passage = tuple[str, int, str]  # policy id, version, section


def has_phrase(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as words (case-insensitive), not inside a longer identifier."""
    return re.search(rf"(?<![\w-]){re.escape(phrase.lower())}(?![\w-])", text.lower()) is not None


def drivers(explanation: dict[str, Any], k: int = 3) -> list[dict[str, Any]]:
    """The top ``k`` factors that pushed risk up by a nameable amount, largest first."""
    ups = [f for f in explanation["factors"] if f["points"] >= MIN_POINTS]
    return sorted(ups, key=lambda f: (-f["contribution"], f["feature"]))[:k]


def threshold_of(decision: dict[str, Any]) -> float:
    """The threshold the risk was held against: deny's when the thresholds said deny, else step-up's."""
    return float(decision["deny_at"] if decision["threshold_outcome"] == "deny" else decision["step_up_at"])


def binding_passages(decision: dict[str, Any]) -> tuple[set[Passage], set[Passage]]:
    """(required, allowed) policy passages for a decision: the one that set its outcome must be cited, and
    only passages behind its threshold, rules or exception may be."""
    thr = (decision["policy_id"], decision["policy_version"], decision["threshold_section"])
    rules = {(r["policy_id"], r["policy_version"], r["section"]): r for r in decision.get("rules", [])}
    exc = decision.get("exception")
    allowed = {thr, *rules}
    if exc:
        allowed.add((exc["policy_id"], exc["policy_version"], exc["section"]))
    if exc and exc.get("changed_outcome_from"):
        return {(exc["policy_id"], exc["policy_version"], exc["section"])}, allowed
    required = {k for k, r in rules.items() if r["effect"] == decision["outcome"] and decision["outcome"] != "allow"}
    if decision["threshold_outcome"] == decision["outcome"] or not required:
        required.add(thr)
    return required, allowed


def missing_parts(text: str, decision: dict[str, Any], explanation: dict[str, Any]) -> list[str]:
    """What of the minimum a decision's narrative must name is missing from ``text`` (empty: complete)."""
    out = []
    if not any(has_phrase(text, w) for w in OUTCOME_WORDS[decision["outcome"]]):
        out.append(f"the outcome ({decision['outcome'].replace('_', '-')})")
    thr = threshold_of(decision)
    if f"{decision['risk']:.2f}" not in text or f"{thr:.2f}" not in text:
        out.append(f"the risk {decision['risk']:.2f} against the threshold {thr:.2f}")
    top = drivers(explanation, 1)
    if top and not has_phrase(text, top[0]["label"]):
        out.append(f"the top driver ({top[0]['label']})")
    if decision.get("threshold_section"):  # decisions made before the section was recorded cannot cite it
        required, _ = binding_passages(decision)
        out += [f"the policy passage {p} §{s}" for p, _v, s in sorted(required) if not (p in text and f"§{s}" in text)]
    return out
