"""The deterministic narrator: grounded by construction, no network, the same words every time.

Every sentence is built from a claim, and every claim from a field of the evidence.
It is both the offline default and the fallback for any LLM draft that fails verification.
"""

from __future__ import annotations

from typing import Any

from agent.narrative import Audience, Citation, Claim, Evidence, Intent, Narrative
from agent.vendor import vendor_sentences

VERB = {"allow": "allowed", "step_up": "stepped up", "deny": "denied"}
TIER_WORD = {"tier": "resources in the {} tier", "kind": "{} resources"}
MIN_POINTS = 0.01


def _scope_words(scope: str) -> str:
    kind, name = scope.split(":", 1)
    return TIER_WORD[kind].format(name.replace("_", " "))


def _cite(c: Citation) -> str:
    return f"{c.policy_id} v{c.version} §{c.section}"


def _find(citations: list[Citation], policy_id: str, section: str) -> Citation | None:
    return next((c for c in citations if c.policy_id == policy_id and c.section == section), None)


def _rule_sentence(ev: Evidence, r: dict[str, Any], claims: list[Claim], did: str, *, lead: bool) -> str:
    rc = _find(ev.citations, r["policy_id"], r["section"])
    claims.append(Claim(type="rule", subject=did, value=r["rule_id"], citation=rc))
    cite = f" ({_cite(rc)})" if rc else ""
    if lead:
        return (f"Rule {r['rule_id']} ({r['effect'].replace('_', '-')}) decided this outcome, not the risk threshold: "
                f"{r['description']}{cite}")
    return f"Rule {r['rule_id']} ({r['effect'].replace('_', '-')}) applied: {r['description']}{cite}"


def _exception_sentence(ev: Evidence, x: dict[str, Any], claims: list[Claim], did: str, *, lead: bool) -> str:
    xc = _find(ev.citations, x["policy_id"], x["section"])
    claims.append(Claim(type="exception", subject=did, value=x["exception_id"], citation=xc))
    changed = f", which turned a {x['changed_outcome_from'].replace('_', '-')} into an allow" if x.get("changed_outcome_from") else ""
    head = f"Exception {x['exception_id']} decided this outcome, not the risk threshold: it was" if lead else \
        f"Exception {x['exception_id']} was"
    return (f"{head} in force until {x['ends_at'][:16].replace('T', ' ')} UTC{changed}" + (f" ({_cite(xc)})." if xc else "."))


def _decision(ev: Evidence, audience: Audience, out: list[str], claims: list[Claim]) -> None:
    d, e = ev.decision or {}, ev.explanation or {}
    did = d["decision_id"]
    # What set the outcome leads; the model's risk and its families follow as context.
    kind = e.get("decided_kind", "threshold")
    lead_rule = {"rule": e.get("decided_by"), "revocation": "session-revoked"}.get(kind)
    led = next((r for r in d.get("rules", []) if r["rule_id"] == lead_rule), None)
    if led is not None:
        out.append(_rule_sentence(ev, led, claims, did, lead=True))
    if kind == "exception" and d.get("exception"):
        out.append(_exception_sentence(ev, d["exception"], claims, did, lead=True))
    thr = d["deny_at"] if d["threshold_outcome"] == "deny" else d["step_up_at"]
    which = "deny" if d["threshold_outcome"] == "deny" else "step-up"
    at = d["timestamp"][:16].replace("T", " ")
    claims += [Claim(type="outcome", subject=did, value=d["outcome"]), Claim(type="risk", subject=did, value=round(d["risk"], 2)),
               Claim(type="threshold", subject=did, value=thr)]
    cmp = "at or above" if d["risk"] >= thr else "below"
    if ev.observed:  # a vendor decided; glassgate scored the same event in shadow and enforced nothing
        vendor_sentences(ev, out, claims)
        who = f"In shadow (glassgate did not enforce), {d['user_id']} would have been"
    else:
        who = f"{d['user_id']} was"
    out.append(f"{who} {VERB[d['outcome']]} access to {d['resource_id']} at {at} UTC ({did}): risk "
               f"{d['risk']:.2f}, {cmp} the {which} threshold {thr:.2f} for {_scope_words(d['threshold_scope'])}.")
    cit = _find(ev.citations, d["policy_id"], d.get("threshold_section", ""))
    if cit:
        claims.append(Claim(type="policy", subject=did, citation=cit))
        out.append(f"That threshold is set by {cit.heading or cit.section} ({_cite(cit)}).")
    drivers = [f for f in e.get("factors", []) if f["points"] >= MIN_POINTS][: 3 if audience is not Audience.AUDITOR else 6]
    if drivers:
        parts = []
        for f in drivers:
            claims.append(Claim(type="driver", subject=did, feature=f["feature"], direction="+", value=f["display"],
                                points=round(f["points"], 2)))
            parts.append(f"{f['label']} {f['display']} (+{f['points']:.2f})")
        context = " (context: the model's risk did not set this outcome)" if kind != "threshold" else ""
        out.append(f"What drove the risk{context}: " + "; ".join(parts) + ".")
    elif d["outcome"] != "allow":
        out.append("No single signal raised the risk by a meaningful amount; the outcome comes from the rules below.")
    for r in d.get("rules", []):
        if r is not led:
            out.append(_rule_sentence(ev, r, claims, did, lead=False))
    if d.get("exception") and kind != "exception":
        out.append(_exception_sentence(ev, d["exception"], claims, did, lead=False))
    for cf in e.get("counterfactuals", []):
        acts = " and ".join(a["label"] for a in cf["actions"])
        claims.append(Claim(type="counterfactual", subject=did, value=cf["outcome_after"],
                            feature=",".join(a["action"] for a in cf["actions"])))
        out.append(f"It would have been {VERB[cf['outcome_after']]} (risk {cf['risk_after']:.2f}, re-scored) had the "
                   f"user been able to {acts}.")
    if d["outcome"] != "allow" and not e.get("counterfactuals") and e.get("counterfactual_note"):
        out.append(f"What would change it: {e['counterfactual_note']}.")
    if e.get("notes") and audience is not Audience.TICKET:
        claims.append(Claim(type="uncertainty", subject=did, value=len(e["notes"])))
        out.append("Caveats: " + "; ".join(e["notes"]) + ".")
    if audience is Audience.AUDITOR:
        out.append(f"Model {d['model_version']}; policy {d['policy_id']} v{d['policy_version']}; base value "
                   f"{e['base_value']:.4f}, margin {e['margin']:.4f} (log-odds), additivity error {e['additivity_error']:.1e}; "
                   f"explanation status {e['status']}.")


def _timeline(ev: Evidence, out: list[str], claims: list[Claim]) -> None:
    t = ev.timeline or {}
    steps = t.get("steps", [])
    sid = t.get("session_id", "")
    out.append(f"Session {sid} ({t.get('user_id', '')}) has {len(steps)} decisions.")
    moved = [s for s in steps[1:] if s["outcome_changed"] or abs(s["risk_delta"]) >= 0.05]
    if not moved:
        out.append("No step changed the outcome or moved the risk noticeably.")
    for s in moved[:5]:
        top = s["changes"][0] if s["changes"] else None
        claims.append(Claim(type="outcome", subject=s["decision_id"], value=s["outcome"]))
        cause = s.get("cause", "signals")
        if s["outcome_changed"] and cause == "rule":
            began = [r for r in s.get("rule_changes", []) if r["applies"] and r["effect"] == s["outcome"]]
            why = "; ".join(f"the rule {r['rule_id']} began to apply" for r in began)
        elif s["outcome_changed"] and cause == "exception":
            why = f"an exception for this user and resource {s['exception_change']}"
        elif s["outcome_changed"] and cause == "scope":
            why = f"{s['resource_id']} falls under other thresholds ({s['scope_change']})"
        elif top:
            claims.append(Claim(type="change", subject=s["decision_id"], feature=top["feature"],
                                direction="+" if top["points_delta"] >= 0 else "-", value=top["after"],
                                points=round(top["points_delta"], 2)))
            why = f"{top['label']} went from {top['before']} to {top['after']} ({top['points_delta']:+.2f})"
        else:
            why = "no signal changed"
        out.append(f"At {s['timestamp'][11:16]} UTC it was {VERB[s['outcome']]} on {s['resource_id']} "
                   f"(risk {s['risk']:.2f}, {s['risk_delta']:+.2f}): {why}.")


def _what_if(ev: Evidence, out: list[str], claims: list[Claim]) -> None:
    w = ev.what_if or {}
    did = w["decision_id"]
    changes = "; ".join(f"{c['label']} {c['before']} -> {c['after']}" for c in w["changes"]) or "nothing changes"
    claims.append(Claim(type="what_if", subject=did, value=w["after"]["outcome"]))
    verdict = "would have been" if w["flipped"] else "would still have been"
    out.append(f"With {changes}, decision {did} {verdict} {VERB[w['after']['outcome']]}: risk {w['after']['risk']:.2f} "
               f"instead of {w['before']['risk']:.2f} (re-scored with the same model and policy).")


def _policy(ev: Evidence, out: list[str], claims: list[Claim]) -> None:
    if not ev.citations:
        out.append("No policy passage matched the question.")
        return
    top = ev.citations[0]
    claims.append(Claim(type="policy", subject=top.policy_id, citation=top))
    first = top.text.strip().split("\n\n")[0].replace("\n", " ")
    # The passage is quoted, marked as such: it is the policy's text (data), not the narrator's own claim.
    out.append(f"{top.heading or top.section} ({_cite(top)}) reads: \u201c{first}\u201d")
    for c in ev.citations[1:3]:
        claims.append(Claim(type="policy", subject=c.policy_id, citation=c))
        out.append(f"See also {c.heading or c.section} ({_cite(c)}).")


def _tuning(ev: Evidence, out: list[str], claims: list[Claim]) -> None:
    t = ev.tuning or {}
    out.append(t["summary"])
    claims.append(Claim(type="tuning", subject=t["policy_id"], value=t["recommendation"]))
    cit = _find(ev.citations, t["policy_id"], t.get("threshold_section", ""))
    if cit:
        claims.append(Claim(type="policy", subject=t["policy_id"], citation=cit))
        out.append(f"The thresholds in force are set by {cit.heading or cit.section} ({_cite(cit)}).")


def narrate(ev: Evidence, audience: Audience = Audience.ANALYST) -> Narrative:
    """The deterministic narrative for ``audience``."""
    out: list[str] = []
    claims: list[Claim] = []
    if ev.intent is Intent.UNSUPPORTED or (ev.note and not (ev.decision or ev.timeline or ev.what_if or ev.citations or ev.tuning)):
        out.append(ev.note or "I can't answer that.")
    if ev.intent in (Intent.WHY_DECISION, Intent.WHAT_IF) and ev.decision:
        if ev.asked_outcome and ev.asked_outcome != ev.decision["outcome"]:
            found = ev.decision["outcome"].replace("_", "-")
            out.append(f"No {ev.asked_outcome.replace('_', '-')} decision matches the question; the decision found "
                       f"({ev.decision['decision_id']}) has the outcome {found}, and this explains it.")
        _decision(ev, audience, out, claims)
    if ev.intent is Intent.WHAT_IF and ev.what_if:
        _what_if(ev, out, claims)
    if ev.timeline and ev.intent in (Intent.SESSION_CHANGE, Intent.WHY_DECISION):
        if ev.intent is Intent.WHY_DECISION:
            out.append("In the session:")
        _timeline(ev, out, claims)
    if ev.intent is Intent.POLICY_LOOKUP:
        _policy(ev, out, claims)
    if ev.intent is Intent.TUNING and ev.tuning:
        _tuning(ev, out, claims)
    if len(ev.matches) > 1 and ev.decision:
        out.append(f"{len(ev.matches)} decisions matched; this is the most recent. Others: "
                   + ", ".join(m["decision_id"] for m in ev.matches[1:4]) + ".")
    cited = {(c.policy_id, c.version, c.section): c for cl in claims if cl.citation for c in [cl.citation]}
    return Narrative(audience=audience, text="\n".join(out), claims=claims, citations=list(cited.values()),
                     narrator="offline")


def evidence_numbers(obj: Any) -> list[float]:
    """Every number in the evidence (for the verifier)."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in evidence_numbers(v)]
    if isinstance(obj, list | tuple):
        return [n for v in obj for n in evidence_numbers(v)]
    return []
