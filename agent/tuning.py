"""Threshold tuning from analyst verdicts: are a scope's denials or step-ups too strict?

A change is proposed only when the verdicts support it: enough labelled decisions, most
of them confirmed benign, and a candidate threshold (found by replaying every stored
decision) that releases benign ones without letting a single confirmed-malicious
decision through (out of denial for the deny threshold, to allow for the step-up
threshold). Otherwise the answer says why not, with the counts.
"""

from __future__ import annotations

from typing import Any

from tools.context import ToolContext
from tools.errors import ToolInputError
from tools.registry import call_tool

MIN_BENIGN = 3
MIN_ANALYSTS = 2  # benign verdicts from one analyst alone never justify loosening a threshold
MIN_BENIGN_SHARE = 0.5
STEP = 0.05


def _search(ctx: ToolContext, entry: Any, which: str) -> tuple[float, Any, int] | None:
    """Raise one threshold step by step while no confirmed-malicious decision gets through."""
    best = None
    current = entry.deny_at if which == "deny" else entry.step_up_at
    ceiling = 0.95 if which == "deny" else entry.deny_at - STEP
    candidate = round(current + STEP, 2)
    while candidate <= ceiling + 1e-9:
        args = {"policy_id": entry.policy_id, "scope": entry.scope, f"{'deny_at' if which == 'deny' else 'step_up_at'}": candidate}
        r = call_tool(ctx, "replay_threshold", args).result
        mal, ben = r.by_verdict["malicious"], r.by_verdict["benign"]
        if which == "deny":
            let_out = mal.cell("deny", "step_up") + mal.cell("deny", "allow")
            released = ben.cell("deny", "step_up") + ben.cell("deny", "allow")
        else:
            let_out = mal.cell("step_up", "allow")
            released = ben.cell("step_up", "allow")
        if let_out > 0:
            break
        if released > 0 and (best is None or released > best[2]):
            best = (candidate, r, released)  # the smallest change that releases the most
        candidate = round(candidate + STEP, 2)
    return best


def analyse(ctx: ToolContext, *, scope: str, when: str) -> dict[str, Any]:
    """Verdict statistics, candidate replays and a recommendation (``keep``, ``loosen`` or ``insufficient``)."""
    with ctx.sessions() as s:
        policy = ctx.policy_in_force(s)
    kind, name = scope.split(":", 1)
    entry = next((t for t in policy.scopes() if t.scope == scope), None)
    if entry is None:
        sets = ", ".join(t.scope for t in policy.scopes())
        raise ToolInputError.one("verdict_stats", "scope", f"no policy sets thresholds for {scope}: decisions there use "
                                 f"the thresholds of their tier; ask about one of {sets}")
    stats = call_tool(ctx, "verdict_stats", {"policy_id": entry.policy_id, "scope": scope, "when": when})
    sc = next(iter(stats.scopes), None)
    counts = {}
    for outcome in ("deny", "step_up"):
        o = sc.by_outcome.get(outcome) if sc else None
        counts[outcome] = {"decisions": o.decisions if o else 0, "benign": o.benign if o else 0,
                           "malicious": o.malicious if o else 0, "benign_analysts": o.benign_analysts if o else 0}
    where = f"{name.replace('_', ' ')} {'tier' if kind == 'tier' else 'resources'}, {when}"
    base: dict[str, Any] = {"policy_id": entry.policy_id, "policy_version": entry.policy_version, "scope": scope,
                            "threshold_section": entry.section, "when": when, "step_up_at": entry.step_up_at,
                            "deny_at": entry.deny_at, "counts": counts, "proposal": None}
    lines = []
    chosen = None
    for outcome, label, thr in (("deny", "denials", entry.deny_at), ("step_up", "step-ups", entry.step_up_at)):
        c = counts[outcome]
        labelled = c["benign"] + c["malicious"]
        people = c["benign_analysts"]
        head = (f"{label.capitalize()} ({where}): {c['decisions']} in all, {c['benign']} confirmed benign "
                f"(by {people} distinct analyst{'s' if people != 1 else ''}) and "
                f"{c['malicious']} confirmed malicious by analysts")
        if c["benign"] < MIN_BENIGN:
            lines.append(f"{head}; too few benign verdicts to call the threshold {thr:.2f} too strict.")
            continue
        if people < MIN_ANALYSTS:
            lines.append(f"{head}; benign verdicts from fewer than {MIN_ANALYSTS} distinct analysts cannot justify "
                         f"loosening {thr:.2f}.")
            continue
        share = c["benign"] / labelled
        if share < MIN_BENIGN_SHARE:
            lines.append(f"{head} ({share:.0%} benign): mostly right, keep {thr:.2f}.")
            continue
        found = _search(ctx, entry, outcome)
        if found is None:
            lines.append(f"{head} ({share:.0%} benign), but any higher threshold would also let a confirmed-malicious "
                         f"decision through; keep {thr:.2f} and review the benign ones.")
            continue
        new, r, released = found
        if released < MIN_BENIGN:
            lines.append(f"{head} ({share:.0%} benign), but no threshold change would release more than {released} "
                         f"of them without letting a confirmed-malicious decision through: most are set by hard rules, "
                         f"not by the threshold; keep {thr:.2f} and review those rules.")
            continue
        lines.append(f"{head} ({share:.0%} benign). Replaying every stored decision with the "
                     f"{'deny' if outcome == 'deny' else 'step-up'} threshold at {new:.2f} instead of {thr:.2f} would "
                     f"release {released} benign {label} and let no confirmed-malicious decision through; "
                     f"{r.overall.changed} decisions would change in all.")
        if chosen is None:
            chosen = (outcome, new, r, released)
    if chosen is None:
        return {**base, "recommendation": "keep" if any("keep" in x for x in lines) else "insufficient",
                "summary": " ".join(lines)}
    outcome, new, r, released = chosen
    proposal = {"policy_id": entry.policy_id, "scope": scope,
                "step_up_at": new if outcome == "step_up" else entry.step_up_at,
                "deny_at": new if outcome == "deny" else entry.deny_at}
    lines.append("I have drafted that change for approval; nothing changes until the approvers it needs approve it.")
    return {**base, "recommendation": "loosen", "proposal": proposal, "replay": r.model_dump(mode="json"),
            "released": released, "malicious_let_through": 0, "benign_analysts": counts[outcome]["benign_analysts"],
            "summary": " ".join(lines)}
