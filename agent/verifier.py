"""The grounding verifier: a narrative may state only what the evidence holds.

Checked for every narrative from any narrator:
- every claim matches the evidence (outcome, risk, threshold, drivers with their direction
  and value, rules, counterfactuals, what-if results, session changes);
- every number in the text equals, after rounding to the digits written, a number in the evidence;
- every factor named in the text is one the evidence holds (and a factor the explanation
  pushed one way is not claimed to push the other);
- every policy cited is a passage that was retrieved;
- the text does not contradict the outcome (no "should have been allowed" for a denial), and does not
  report an action as done, in any paraphrase (agent.claim_lexicon);
- it is checked as people read it (agent.textnorm): NFKC, invisible characters removed, confusable
  letters folded to ASCII; a word mixing scripts (a Cyrillic letter in a Latin word) is refused.
"""

from __future__ import annotations

import re
from typing import Any

from agent.completeness import missing_parts
from agent.narrative import Claim, Evidence, Intent, Narrative, Verification, VerificationFailure
from agent.narrator_offline import evidence_numbers
from agent.textnorm import fold
from agent.verifier_reading import mixed_scripts, paraphrased_actions, paraphrased_disputes
from risk.catalog import FEATURES

NUMBER = re.compile(r"(?<![\w.\-§/:])[-+]?\d[\d,]*(?:\.\d+)?(?![\w\-])")
POLICY_ID = re.compile(r"\bPOL-[A-Z]+-\d{3}\b")
CONTRADICTIONS = re.compile(
    r"\b(should|ought to|must) (?:have )?(?:been |be )?(?:allowed|granted|permitted|let in|reversed|overturned|"
    r"lifted|unblocked)\b|\b(?:was|is|looks like|seems like) (?:a |an )?(?:mistake|error|false positive|false alarm|"
    r"wrong)\b|\bfalse (?:alarm|positive)\b|\bdenial (?:was|is) (?:unjustified|unwarranted|incorrect)\b|"
    r"\bgrant (?:him |her |them |the user )?an exception\b|\blet (?:him|her|them) in\b",
    re.IGNORECASE)
# A narrative explains; it never reports an action as done (actions are proposals a human approves, recorded
# on the proposal). An obedient model told by injected text writes exactly these sentences.
ACTION_TAKEN = re.compile(
    r"\b(?:has|have|had) been (?:approved|applied|executed|revoked|granted|extended|widened|changed|lowered|raised|"
    r"posted|forwarded)\b|\bI (?:have |had )?(?:also )?(?:approved|applied|executed|revoked|granted|extended|changed|"
    r"lowered|raised|posted|forwarded|drafted)\b|\b(?:is|are) now\b|\bnow (?:lasts?|is|are)\b", re.IGNORECASE)
# A dispute of a denial when the evidence holds no decision to dispute (e.g. an answer to a policy question).
DISPUTE_ANY = re.compile(r"\b(?:denial|decision|block)\b[^.]{0,40}?\b(?:was|is) (?:a |an )?(?:mistake|error|wrong)\b|"
                         r"\bshould (?:have )?been (?:allowed|granted|permitted)\b", re.IGNORECASE)
OUTCOME_TEXT = {"allowed": "allow", "granted": "allow", "let in": "allow", "denied": "deny", "blocked": "deny",
                "refused": "deny", "stepped up": "step_up", "challenged": "step_up"}
SUBJECT_OUTCOME = re.compile(r"\b(?:was|is|has been|were)\s+(allowed|granted|let in|denied|blocked|refused|stepped up|"
                             r"challenged)\b", re.IGNORECASE)
RISK_VALUE = re.compile(r"\brisk(?: score)?(?: of| was| is| at| =|:)?\s+([01]?\.\d+)", re.IGNORECASE)
THRESHOLD_VALUE = re.compile(r"\bthreshold(?: of| is| at| =|:)?\s+([01]?\.\d+)", re.IGNORECASE)
CITED_SECTION = re.compile(r"§\s?([0-9][\w-]*)")
CITED_VERSION = re.compile(r"\b(POL-[A-Z]+-\d{3})\s+v(\d+)\b")


def _numbers_allowed(ev: Evidence) -> set[str]:
    """Every way a number from the evidence may be written: rounded to 0-4 digits, with thousands
    separators, as a percentage, and the clock times and dates of the evidence's timestamps."""
    out: set[str] = set()
    for v in evidence_numbers(ev.model_dump(mode="json")):
        for x in (v, v * 100):
            for d in range(5):
                out.add(f"{x:.{d}f}")
                out.add(f"{x:,.{d}f}")
    for ts in re.findall(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", ev.model_dump_json()):
        y, m, d = ts[:10].split("-")
        out.update({y, m, d, str(int(m)), str(int(d)), ts[11:13], ts[14:16], str(int(ts[11:13]))})
    for text in re.findall(r"\d+", ev.question):  # numbers the asker wrote may be repeated back
        out.add(text)
    out |= {str(n) for n in _list_lengths(ev.model_dump(mode="json"))}  # "has 4 decisions", "5 matched"
    # Numbers written inside the evidence's own strings (formatted values, rule descriptions, passages)
    # may be quoted as written; not those of free text the caller sent (a user agent can say anything, so
    # it must not make an invented number look grounded).
    for text in _strings(ev.model_dump(mode="json"), skip=CALLER_TEXT):
        for m in NUMBER.finditer(fold(text)):
            out |= _written(m.group())
    return out


def _list_lengths(obj: Any) -> list[int]:
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _list_lengths(v)]
    if isinstance(obj, list):
        return [len(obj)] + [n for v in obj for n in _list_lengths(v)]
    return []


def _norm(text: str) -> str:
    return " ".join(text.split())


def _residual(text: str, ev: Evidence) -> str:
    """The text with every verbatim quote of an evidence string (a caveat, an action label, a rule's
    description, a policy paragraph) cut out: quoted evidence is data, not a new claim."""
    quotes: set[str] = set()
    for s in map(fold, _strings(ev.model_dump(mode="json"))):
        for piece in [s, *re.split(r"\n\s*\n", s)]:
            piece = _norm(piece)
            if len(piece) >= 50:  # sentences and paragraphs, never a bare label or value
                quotes.add(piece)
    out = _norm(text)
    for q in sorted(quotes, key=len, reverse=True):
        if q in out:
            out = out.replace(q, " \u2039quoted\u203a ")
    return out


CALLER_TEXT = frozenset({"user_agent"})  # evidence keys holding free text from outside


def _strings(obj: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [t for k, v in obj.items() if k not in skip for t in _strings(v, skip)]
    if isinstance(obj, list):
        return [t for v in obj for t in _strings(v, skip)]
    return []


def _written(token: str) -> set[str]:
    """A written number as the evidence may hold it: a '+' is decoration, a '-' is not."""
    t = token.lstrip("+")
    return {t, t.replace(",", "")}


def _check_claim(c: Claim, ev: Evidence) -> str | None:
    d, e = ev.decision or {}, ev.explanation or {}
    by_decision = {d.get("decision_id"): d} if d else {}
    steps = {s["decision_id"]: s for s in (ev.timeline or {}).get("steps", [])}
    if c.type == "outcome":
        known = by_decision.get(c.subject) or steps.get(c.subject)
        if known is None:
            return f"outcome claimed for {c.subject}, which is not in the evidence"
        return None if known["outcome"] == c.value else f"outcome {c.value} for {c.subject}; the evidence says {known['outcome']}"
    if c.type == "risk":
        return None if d and isinstance(c.value, int | float) and abs(d["risk"] - c.value) <= 0.005 else \
            f"risk {c.value} does not match the evidence ({d.get('risk')})"
    if c.type == "threshold":
        return None if d and c.value in (d["step_up_at"], d["deny_at"]) else f"threshold {c.value} is not the decision's"
    if c.type == "driver":
        f = next((x for x in e.get("factors", []) if x["feature"] == c.feature), None)
        if f is None:
            return f"driver {c.feature!r} is not among the explanation's factors"
        if (c.direction == "+") != (f["points"] > 0):
            return f"driver {c.feature} claimed to push risk {'up' if c.direction == '+' else 'down'}; it pushed the other way"
        if c.value is not None and str(c.value) != f["display"]:
            return f"driver {c.feature} claimed value {c.value!r}; the evidence says {f['display']!r}"
        if c.points is not None and abs(c.points - f["points"]) > 0.005:
            return f"driver {c.feature} claimed {c.points:+.2f}; the evidence says {f['points']:+.2f}"
        return None
    if c.type == "rule":
        return None if c.value in {r["rule_id"] for r in d.get("rules", [])} else f"rule {c.value} did not match"
    if c.type == "counterfactual":
        ok = any(cf["outcome_after"] == c.value and ",".join(a["action"] for a in cf["actions"]) == c.feature
                 for cf in e.get("counterfactuals", []))
        return None if ok else f"counterfactual {c.feature} -> {c.value} was not verified by re-scoring"
    if c.type == "what_if":
        w = ev.what_if or {}
        return None if w and w["after"]["outcome"] == c.value else f"what-if outcome {c.value} is not the re-scored one"
    if c.type == "change":
        s = steps.get(c.subject)
        ch = next((x for x in (s or {}).get("changes", []) if x["feature"] == c.feature), None)
        if ch is None:
            return f"change of {c.feature} at {c.subject} is not in the timeline"
        return None if (c.direction == "+") == (ch["points_delta"] >= 0) else f"change of {c.feature} has the wrong direction"
    if c.type == "exception":
        x = d.get("exception") or {}
        return None if x.get("exception_id") == c.value else f"exception {c.value} was not in force"
    if c.type == "tuning":
        return None if (ev.tuning or {}).get("recommendation") == c.value else "tuning recommendation not in evidence"
    if c.type in ("vendor", "agreement"):
        obs = ev.observed or {}
        key = "outcome" if c.type == "vendor" else "agreement"
        if not obs:
            return f"a {c.type} claim about {c.subject}, but the evidence holds no vendor decision"
        return None if obs.get(key) == c.value else f"{c.type} {c.value} for {c.subject}; the evidence says {obs.get(key)}"
    return None


def verify(narrative: Narrative, ev: Evidence) -> Verification:
    """Check ``narrative`` against ``ev``; every failure is named."""
    failures: list[VerificationFailure] = []
    retrieved = {(c.policy_id, c.version, c.section) for c in ev.citations}
    for c in narrative.claims:
        if c.citation is not None and (c.citation.policy_id, c.citation.version, c.citation.section) not in retrieved:
            failures.append(VerificationFailure(check="citation", detail=f"{c.citation.policy_id} v{c.citation.version} "
                                                f"§{c.citation.section} was not retrieved"))
        problem = _check_claim(c, ev)
        if problem:
            failures.append(VerificationFailure(check=f"claim:{c.type}", detail=problem))
    for cit in narrative.citations:
        if (cit.policy_id, cit.version, cit.section) not in retrieved:
            failures.append(VerificationFailure(check="citation", detail=f"{cit.policy_id} v{cit.version} "
                                                f"§{cit.section} was not retrieved"))
    text = fold(narrative.text)  # what a reader sees: every check below reads this form
    failures += mixed_scripts(narrative.text, _strings(ev.model_dump(mode="json")))
    allowed = _numbers_allowed(ev)
    for m in NUMBER.finditer(text):
        if not (_written(m.group()) & allowed):
            failures.append(VerificationFailure(check="number", detail=f"{m.group()!r} is not a number in the evidence"))
    own = _residual(text, ev)  # what the narrative says in its own words
    retrieved_ids = {c.policy_id for c in ev.citations} | _decision_policy_ids(ev)
    for pid in set(POLICY_ID.findall(own)) - retrieved_ids:
        failures.append(VerificationFailure(check="citation", detail=f"{pid} is cited but no passage of it was retrieved"))
    failures += _factor_mentions(own, ev)
    failures += _bound_values(own, ev)
    failures += _outcome_words(own, ev)
    failures += _cited_places(own, ev)
    if ev.decision and not any(c.type == "outcome" and c.subject == ev.decision["decision_id"] for c in narrative.claims):
        failures.append(VerificationFailure(check="claim:outcome", detail="the narrative makes no checkable claim about "
                                            f"the outcome of {ev.decision['decision_id']}"))
    d = ev.decision or {}
    disputed = CONTRADICTIONS.search(own)
    if d.get("outcome") in ("deny", "step_up") and disputed:
        failures.append(VerificationFailure(check="contradiction", detail=f"the text disputes a {d['outcome']} that "
                                            f"the evidence supports: {disputed.group()!r}"))
    elif not d and (any_dispute := DISPUTE_ANY.search(own)):
        failures.append(VerificationFailure(check="contradiction", detail="the text disputes a decision the evidence "
                                            f"does not hold: {any_dispute.group()!r}"))
    else:
        failures += paraphrased_disputes(own, d)
    if ev.intent is Intent.WHY_DECISION and ev.decision and ev.explanation:
        # the minimum a reason people can defend names (agent.completeness): a terse draft is not one
        for part in missing_parts(text, ev.decision, ev.explanation):
            failures.append(VerificationFailure(check="incomplete", detail=f"the narrative does not name {part}"))
    failures += _vendor_words(own, ev)
    acted = ACTION_TAKEN.search(own)
    if acted:
        failures.append(VerificationFailure(check="action_claim", detail=f"the text reports an action as done "
                                            f"({acted.group()!r}); a narrative only explains, actions are proposals"))
    else:
        failures += paraphrased_actions(own, d)
    return Verification(verified=not failures, failures=failures)


def _risks(ev: Evidence) -> list[float]:
    d = ev.decision or {}
    out = [d["risk"]] if d else []
    out += [s["risk"] for s in (ev.timeline or {}).get("steps", [])]
    out += [cf["risk_after"] for cf in (ev.explanation or {}).get("counterfactuals", [])]
    w = ev.what_if or {}
    out += [w[k]["risk"] for k in ("before", "after", "stored") if isinstance(w.get(k), dict) and "risk" in w[k]]
    out += [m["risk"] for m in ev.matches]
    return out


def _thresholds(ev: Evidence) -> list[float]:
    d, t = ev.decision or {}, ev.tuning or {}
    out = [d[k] for k in ("step_up_at", "deny_at") if k in d]
    out += [s for s in (t.get("step_up_at"), t.get("deny_at")) if s is not None]
    out += [v for v in ((t.get("proposal") or {}).get("step_up_at"), (t.get("proposal") or {}).get("deny_at")) if v is not None]
    return out


def _bound_values(text: str, ev: Evidence) -> list[VerificationFailure]:
    """A number written as a risk must be a risk of the evidence; as a threshold, a threshold."""
    out = []
    for pattern, values, what in ((RISK_VALUE, _risks(ev), "risk"), (THRESHOLD_VALUE, _thresholds(ev), "threshold")):
        for m in pattern.finditer(text):
            token = m.group(1)
            digits = len(token.split(".")[1])
            if not any(f"{v:.{digits}f}".lstrip("0") == token.lstrip("0") for v in values):
                out.append(VerificationFailure(check=f"number:{what}", detail=f"{what} {token} is not a {what} in the evidence"))
    return out


def _outcome_words(text: str, ev: Evidence) -> list[VerificationFailure]:
    """Outcomes stated in the text must be outcomes the evidence holds; the decision's own sentence must match."""
    d = ev.decision or {}
    known = {d.get("outcome")} | {s["outcome"] for s in (ev.timeline or {}).get("steps", [])}
    known |= {cf["outcome_after"] for cf in (ev.explanation or {}).get("counterfactuals", [])}
    w = ev.what_if or {}
    known |= {w[k]["outcome"] for k in ("before", "after", "stored") if isinstance(w.get(k), dict) and "outcome" in w[k]}
    known |= {m["outcome"] for m in ev.matches}
    if ev.observed:  # the vendor's own outcome may be stated too (its challenge is glassgate's step-up)
        known.add({"allow": "allow", "challenge": "step_up", "deny": "deny"}[ev.observed["outcome"]])
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n", text):
        for m in SUBJECT_OUTCOME.finditer(sentence):
            said = OUTCOME_TEXT[m.group(1).lower()]
            hypothetical = re.search(r"\b(would|could|had|if|unless)\b", sentence[: m.start()], re.IGNORECASE)
            if said not in known and not hypothetical:
                out.append(VerificationFailure(check="outcome", detail=f"the text says {m.group(0)!r}; no decision in "
                                               "the evidence had that outcome"))
            elif d and not hypothetical and d["user_id"] in sentence[: m.start()] and d["resource_id"] in sentence \
                    and said != d["outcome"]:
                out.append(VerificationFailure(check="outcome", detail=f"the text says {d['user_id']} {m.group(0)}; "
                                               f"the decision was {d['outcome']}"))
    return out


def _cited_places(text: str, ev: Evidence) -> list[VerificationFailure]:
    """Sections and versions written in the text must be ones the evidence holds."""
    d = ev.decision or {}
    sections = {c.section for c in ev.citations} | {r["section"] for r in d.get("rules", [])}
    sections |= {d["threshold_section"]} if d.get("threshold_section") else set()
    if d.get("exception"):
        sections.add(d["exception"]["section"])
    versions = {(c.policy_id, c.version) for c in ev.citations} | {(r["policy_id"], r["policy_version"]) for r in d.get("rules", [])}
    if d:
        versions.add((d["policy_id"], d["policy_version"]))
    out = [VerificationFailure(check="citation", detail=f"§{m.group(1)} is not a section in the evidence")
           for m in CITED_SECTION.finditer(text) if m.group(1).rstrip(".,;:)") not in sections]
    out += [VerificationFailure(check="citation", detail=f"{m.group(1)} v{m.group(2)} is not a version in the evidence")
            for m in CITED_VERSION.finditer(text) if (m.group(1), int(m.group(2))) not in versions]
    return out


def _decision_policy_ids(ev: Evidence) -> set[str]:
    d = ev.decision or {}
    ids = {d["policy_id"]} if d else set()
    ids |= {r["policy_id"] for r in d.get("rules", [])}
    if d.get("exception"):
        ids.add(d["exception"]["policy_id"])
    if ev.tuning:
        ids.add(ev.tuning["policy_id"])
    return ids


def _factor_mentions(text: str, ev: Evidence) -> list[VerificationFailure]:
    """A factor named in the text must be one the evidence holds with a visible effect."""
    lowered = text.lower()
    known: dict[str, Any] = {f["feature"]: f for f in (ev.explanation or {}).get("factors", [])}
    moved = {c["feature"] for s in (ev.timeline or {}).get("steps", []) for c in s["changes"]}
    changed = {c["feature"] for c in (ev.what_if or {}).get("changes", [])}
    cf = {c["feature"] for x in (ev.explanation or {}).get("counterfactuals", []) for a in x["actions"] for c in a["changes"]}
    out = []
    for f in FEATURES:
        if not re.search(rf"(?<![\w-]){re.escape(f.label.lower())}(?![\w-])", lowered):
            continue
        if f.name in moved or f.name in changed or f.name in cf:
            continue
        k = known.get(f.name)
        if k is None or abs(k["points"]) < 0.005:
            out.append(VerificationFailure(check="factor", detail=f"{f.label!r} is named but did not drive this decision"))
    return out


VENDOR_SAID = re.compile(r"\b(Okta|Microsoft Entra|Entra|Azure AD|the OCSF source)\s+(allowed|challenged|denied|blocked)\b",
                         re.IGNORECASE)
VENDOR_VERBS = {"allowed": "allow", "challenged": "challenge", "denied": "deny", "blocked": "deny"}
AGREES = re.compile(r"\bglassgate agrees\b", re.IGNORECASE)
DISAGREES = re.compile(r"\bglassgate disagrees\b|\bcandidate false positive\b|\bcandidate miss\b|"
                       r"\bglassgate sees no elevated risk\b", re.IGNORECASE)


def _vendor_words(text: str, ev: Evidence) -> list[VerificationFailure]:
    """What a vendor decided, and whether glassgate agrees, must be what the evidence's observed block says."""
    obs = ev.observed or {}
    out = []
    for m in VENDOR_SAID.finditer(text):
        if not obs:
            out.append(VerificationFailure(check="vendor", detail=f"the text says {m.group(0)!r}; the evidence holds "
                                           "no vendor decision"))
        elif VENDOR_VERBS[m.group(2).lower()] != obs["outcome"]:
            out.append(VerificationFailure(check="vendor", detail=f"the text says {m.group(0)!r}; the vendor's "
                                           f"outcome was {obs['outcome']}"))
    agreement = obs.get("agreement")
    if AGREES.search(text) and agreement != "agree":
        out.append(VerificationFailure(check="agreement", detail=f"the text says glassgate agrees; the evidence says "
                                       f"{agreement or 'there is no vendor decision'}"))
    if (hit := DISAGREES.search(text)) and agreement != "disagree":
        out.append(VerificationFailure(check="agreement", detail=f"the text says {hit.group(0)!r}; the evidence says "
                                       f"{agreement or 'there is no vendor decision'}"))
    return out
