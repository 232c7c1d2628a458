"""Decisions glassgate did not make, for the agent: finding the vendor decision a question is about, how
often glassgate disagrees with each vendor rule, and the grounded sentences that explain a vendor decision
beside glassgate's own shadow decision (used by the offline narrator; checked by the verifier)."""

from __future__ import annotations

from typing import Any

from agent.narrative import Claim, Evidence
from agent.planner import VENDOR_OUTCOMES, Plan
from tools.context import ToolContext
from tools.registry import call_tool

VENDOR_NAMES = {"okta": "Okta", "entra": "Microsoft Entra", "ocsf": "the OCSF source"}
VENDOR_VERB = {"allow": "allowed", "challenge": "challenged", "deny": "denied"}
FAMILY_WORDS = {"identity": "identity confidence", "device": "device posture", "behavior": "session behavior",
                "network": "network context", None: "no glassgate family"}
GG_DID = {"allow": "allowed it", "step_up": "stepped it up", "deny": "denied it"}


def vendor_decision_ids(ctx: ToolContext, p: Plan, ev: Evidence) -> list[str]:
    """The shadow decisions of the vendor decisions a question names, newest first (``ev.note`` says why none)."""
    args = {k: v for k, v in {"vendor": p.vendor, "user_id": p.user_id, "when": p.when, "limit": 5,
                              "vendor_outcome": VENDOR_OUTCOMES.get(p.outcome or "")}.items() if v is not None}
    found = call_tool(ctx, "find_vendor_decisions", args)
    if not found.decisions and p.when:  # the asker's time words may be off: widen once
        found = call_tool(ctx, "find_vendor_decisions", {k: v for k, v in args.items() if k != "when"})
    ev.matches = [m.shadow.model_dump(mode="json") for m in found.decisions]
    if not found.decisions:
        who = " ".join(str(x) for x in (p.user_id, args.get("vendor_outcome"), p.when) if x)
        ev.note = f"No {VENDOR_NAMES[p.vendor or 'okta']} decision matches ({who or 'nothing specific was named'})."
    return [m.shadow.decision_id for m in found.decisions]


def vendor_tuning(ctx: ToolContext, *, vendor: str, when: str | None) -> dict[str, Any]:
    """Disagreements per vendor rule, and the analysts' verdicts on its blocks, as tuning evidence (over all
    ingested history unless the question said when)."""
    stats = call_tool(ctx, "vendor_rule_stats", {"vendor": vendor, **({"when": when} if when else {})})
    when = when or "in all ingested history"
    name = VENDOR_NAMES[vendor]
    rules = [r.model_dump(mode="json") for r in stats.rules]
    if not rules:
        return {"policy_id": vendor, "recommendation": "no_data", "threshold_section": "", "rules": [],
                "summary": f"No {name} decisions were ingested {when}."}
    parts = []
    for r in rules[:5]:
        label = f"rule \u201c{r['rule']}\u201d" if r["rule"] else "decisions without a named rule"
        line = (f"{name}'s {label}: {r['decisions']} decisions, {r['restrictive']} challenged or denied; glassgate "
                f"disagrees with {r['disagreements']}, and sees no elevated risk in {r['restrictive_no_risk']} of "
                "the challenged or denied")
        if r["verdicts"]:
            line += (f"; analysts judged {r['benign']} of {r['verdicts']} of its blocks and challenges benign "
                     f"({r['benign_share'] * 100:.0f}%)")
        parts.append(line + ".")
    worst = rules[0]
    rec = "review_rule" if worst["restrictive_no_risk"] or (worst["benign_share"] or 0) >= 0.4 else "no_change"
    return {"policy_id": vendor, "recommendation": rec, "threshold_section": "", "rules": rules,
            "summary": f"{name} decisions {when}, by the rule that decided: " + " ".join(parts)}


def _reasons(obs: dict[str, Any]) -> str:
    by: dict[Any, list[str]] = {}
    for r in obs.get("reasons", []):
        by.setdefault(r["family"], []).append(r["text"])
    return "; ".join(f"{FAMILY_WORDS[f]}: " + ", ".join(f"\u201c{t}\u201d" for t in ts) for f, ts in by.items())


def vendor_sentences(ev: Evidence, out: list[str], claims: list[Claim]) -> None:
    """The vendor's decision, its reasons by family and its deciding rule, then whether glassgate agrees."""
    obs, d, e = ev.observed or {}, ev.decision or {}, ev.explanation or {}
    did, name = d["decision_id"], VENDOR_NAMES[obs["vendor"]]
    claims.append(Claim(type="vendor", subject=did, value=obs["outcome"]))
    level = f" at {obs['risk_level'].upper()} risk" if obs.get("risk_level") else " (no risk level stated)"
    reasons = _reasons(obs)
    first = f"{name} {VENDOR_VERB[obs['outcome']]} this sign-in{level}" + (f" for {reasons}" if reasons else
                                                                           ", stating no reasons")
    rule = next((p for p in obs.get("policies", []) if p.get("decided")), None)
    if rule:
        controls = f", grant controls {', '.join(rule['controls'])}" if rule.get("controls") else ""
        first += f"; the rule that decided: \u201c{rule['name']}\u201d{controls}"
    if obs.get("status_detail"):
        first += f" (status: {obs['status_detail']})"
    out.append(first + f" (vendor event {obs['vendor_event_id']}).")
    agreement = obs.get("agreement")
    claims.append(Claim(type="agreement", subject=did, value=agreement))
    tops = [f for f in e.get("factors", []) if f["points"] >= 0.01][:2]
    why = "; ".join(f"{f['label']} {f['display']} ({f['points']:+.2f})" for f in tops)
    for f in tops:
        claims.append(Claim(type="driver", subject=did, feature=f["feature"], direction="+", value=f["display"],
                            points=round(f["points"], 2)))
    gg = GG_DID[d["outcome"]]
    rules = [r["rule_id"] for r in d.get("rules", []) if r["effect"] == d["outcome"]]
    if not why and rules:
        why = "rule " + ", ".join(rules)
    if agreement == "not_comparable":
        out.append(f"That was a failed credential check, not a risk decision: glassgate counts it towards the "
                   f"user's failed attempts and does not score it against {name}.")
    elif agreement == "agree" and obs["outcome"] != "allow":
        out.append(f"glassgate agrees (in shadow it would have {gg}, risk {d['risk']:.2f})"
                   + (f": {why}." if why else "."))
    elif agreement == "agree":
        out.append(f"glassgate agrees: it would have {gg} too (risk {d['risk']:.2f}).")
    elif obs["outcome"] != "allow":
        out.append(f"glassgate sees no elevated risk (in shadow it would have {gg}, risk {d['risk']:.2f}): a "
                   f"candidate false positive of {name}" + (f"'s rule \u201c{rule['name']}\u201d." if rule else "."))
    else:
        out.append(f"glassgate disagrees: in shadow it would have {gg} (risk {d['risk']:.2f})"
                   + (f": {why}; a candidate miss by {name}." if why else f"; a candidate miss by {name}."))
    missing = [m["field"] for m in obs.get("missing", [])]
    if missing:
        out.append(f"Not in {name}'s record (named, not taken as benign): " + ", ".join(missing) + ".")
