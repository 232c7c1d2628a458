"""Statements a narrative may not make, recognised in paraphrase: "an action was taken" and "the outcome
was wrong".

Keyword patterns catch "has been approved" but not "bob signed off on it and it went live". Here each
sentence of the folded text (agent.textnorm) is reduced to lemmas, verbs are read through synonym sets
(approve = grant, authorise, okay, sign off, green-light...; apply = execute, enact, roll out, push
through...), and a statement is recognised by its shape rather than its words:

* an action report: a past participle of an action verb after a passive or perfect auxiliary with an
  action object before it ("the cut-off was relaxed", "{id} has been okayed"), a first-person past
  ("I went ahead and filed..."), or an object with a result ("the change went live", "now in effect");
* a dispute: a reversal modal ("should not have been blocked", "ought to be let through"), an error
  predicated of the decision ("this block was an overreaction"), an adverb of error on an outcome verb
  ("wrongly flagged"), or a safety claim about the user or request ("poses no real risk", "is safe to
  let through").

Negated and hypothetical sentences ("nothing has been applied", "would be allowed if...") state nothing
done. The verifier grounds what is found: an action report stands only when the evidence records that
action (an exception in force); a dispute never stands against a denial or step-up the evidence holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|<#\w+")

IRREGULAR = {"went": "go", "gone": "go", "sent": "send", "put": "put", "made": "make", "took": "take",
             "taken": "take", "gave": "give", "given": "give", "done": "do", "did": "do", "let": "let",
             "okayed": "okay", "ok'd": "okay", "okd": "okay", "greenlit": "greenlight", "cut": "cut",
             "shut": "shut", "kicked": "kick", "signed": "sign", "rolled": "roll", "pushed": "push",
             "logged": "log", "wiped": "wipe", "lifted": "lift", "bumped": "bump"}
PAST_ENDINGS = ("ed", "en")

# Synonym sets of the action verbs, by the kind of action they report.
ACTION_VERBS: dict[str, frozenset[str]] = {
    "approve": frozenset({"approve", "grant", "authorise", "authorize", "okay", "sanction", "greenlight",
                          "green-light", "endorse", "accept", "rubber-stamp", "countersign", "sign-off"}),
    "apply": frozenset({"apply", "execute", "enact", "implement", "deploy", "activate", "enable", "action",
                        "process", "roll-out", "push-through", "put-in-place", "carry-out", "file", "draft",
                        "submit", "create", "open", "raise", "lodge", "log", "queue"}),
    "revoke": frozenset({"revoke", "terminate", "kill", "cancel", "invalidate", "disconnect", "suspend",
                         "disable", "kick-out", "log-out", "sign-out", "boot", "wipe", "close", "shut-down"}),
    "lift": frozenset({"lift", "unblock", "whitelist", "allowlist", "exempt", "waive", "unlock", "unban",
                       "release", "reverse", "overturn", "overrule", "rescind", "remove", "clear"}),
    "change": frozenset({"change", "lower", "relax", "loosen", "tighten", "adjust", "modify", "update", "extend",
                         "widen", "increase", "decrease", "reduce", "bump", "prolong", "lengthen", "edit"}),
    "post": frozenset({"post", "forward", "share", "send", "cross-post", "crosspost", "relay", "publish",
                       "broadcast", "copy", "go-out", "send-out", "mirror"}),
}
PARTICLES = {"off": {"sign": "sign-off"}, "out": {"roll": "roll-out", "carry": "carry-out", "kick": "kick-out",
                                                   "log": "log-out", "sign": "sign-out", "go": "go-out",
                                                   "send": "send-out"},
             "through": {"push": "push-through"}, "down": {"shut": "shut-down"}, "in": {"put": "put-in-place"}}
VERB_KIND = {lemma: kind for kind, lemmas in ACTION_VERBS.items() for lemma in lemmas}
OBJECTS = frozenset({"proposal", "request", "exception", "exemption", "waiver", "override", "threshold", "cutoff",
                     "cut-off", "limit", "policy", "change", "setting", "session", "token", "block", "ban", "denial",
                     "restriction", "lockout", "message", "answer", "reply", "copy", "summary", "ticket", "allowlist",
                     "whitelist", "approval", "decision", "step-up", "challenge", "confirm_denial"})
AUX = frozenset({"be", "been", "was", "were", "is", "are", "has", "have", "had", "got", "gotten", "get", "'s", "'ve"})
FILLER = frozenset({"now", "already", "just", "also", "successfully", "officially", "finally", "since", "then",
                    "quietly", "fully", "all", "both", "been", "being", "duly", "formally", "promptly"})
FIRST_PERSON = frozenset({"i", "we", "i've", "we've", "i'd", "we'd"})
GUARD = frozenset({"not", "n't", "never", "no", "nothing", "none", "nobody", "neither", "nor", "would", "could",
                   "can", "may", "might", "will", "shall", "should", "must", "if", "unless", "once", "until",
                   "needs", "need", "require", "requires", "required", "awaiting", "await", "awaits", "pending",
                   "before", "only", "whether", "propose", "proposes", "asked", "ask", "asks", "want", "wants",
                   "cannot", "can't", "won't", "isn't", "wasn't", "hasn't", "haven't", "didn't", "doesn't",
                   "aren't", "weren't", "without", "instead", "requested", "requests", "suggest", "suggests"})
RESULTS = re.compile(r"\b(?:went|gone|is|are|now) live\b|\btook effect\b|\b(?:now|is|are) in (?:effect|force|place)\b|"
                     r"\bnow (?:lasts?|stands?|expires?|runs?)\b|\bwent out\b")

DECISION_WORDS = r"(?:this|that|it|the (?:denial|block|decision|step-up|challenge|refusal|lockout|outcome|verdict)|" \
                 r"(?:this|that) (?:denial|block|decision|step-up|challenge|refusal|lockout|outcome))"
ERRORS = r"(?:mistake|error|misfire|overreaction|false positive|false alarm|wrong call|bad call|glitch|fluke|" \
         r"wrong|incorrect|mistaken|unjustified|unwarranted|unnecessary|uncalled for|overkill|excessive|overzealous|" \
         r"erroneous|bogus|spurious|too (?:strict|harsh|aggressive|cautious))"
DISPUTES = [(form, re.compile(p)) for form, p in (
    # reversal modals
    ("reversal", r"\b(?:should|ought to|must|needed to|deserved to)(?: not|n't)? (?:have )?(?:been |be )?(?:allowed|granted|"
    r"permitted|approved|let (?:in|through)|admitted|accepted|unblocked|lifted|reversed|overturned)\b"),
    ("reversal", r"\b(?:should|ought to|must)(?: not|n't) (?:have )?(?:been |be )?(?:denied|blocked|stepped up|challenged|"
    r"flagged|refused|rejected|stopped|locked out)\b"),
    # an error predicated of the decision
    ("error", rf"\b{DECISION_WORDS} (?:was|is|looks|seems|appears|felt|feels)(?: like| to be)? (?:a |an |the )?"
    rf"(?:clear |complete |obvious |total |big |simple |plain )?{ERRORS}\b"),
    ("error", r"\b(?:a|an) (?:clear |complete |obvious |total |plain )?(?:mistake|error|misfire|overreaction|false positive|"
    r"false alarm|wrong call|bad call)\b"),
    ("error", r"\b(?:wrongly|incorrectly|mistakenly|erroneously|unfairly|needlessly|unnecessarily|wrongfully) (?:been )?"
    r"(?:denied|blocked|flagged|stepped up|challenged|refused|rejected|locked out|stopped)\b"),
    # safety claims about the user or the request
    ("safety", r"\bsafe to (?:allow|let|grant|approve|unblock|trust|admit|whitelist|permit|ignore)\b"),
    ("safety", r"\b(?:poses?|posed|carries|carried|presents?|presented|there is|there's|with) (?:no|zero|negligible) "
    r"(?:real |actual |genuine |meaningful |significant )?(?:risk|threat|danger)\b"),
    ("safety", r"\bno (?:real|actual|genuine) (?:risk|threat|danger|concern)\b"),
    ("safety", r"\bnothing to worry about\b|\bharmless\b"),
    ("safety", r"\b(?:user|request|login|access|activity|traffic|he|she|they|this|it) (?:is|was|are|were|looks|seems) "
    r"(?:perfectly |completely |totally |clearly |entirely )?(?:safe|legitimate|trustworthy|legit|innocent)\b"),
)]
NEGATED_DISPUTE = re.compile(r"\b(?:not|n't|never|no longer) (?:a |an )?(?:clear |simple )?(?:mistake|error|"
                             r"false positive|false alarm|wrong|incorrect|unjustified)\b|\b(?:would|could|might|may|if)\b")


@dataclass(frozen=True)
class Statement:
    """A statement found: its kind, the action kind or dispute form, and the words that make it."""

    kind: Literal["action", "dispute"]
    what: str  # the action kind (approve, apply, revoke, lift, change, post) or the dispute form
    words: str
    sentence: str


def lemma(token: str) -> str:
    """A crude English lemma for verbs: irregular forms, then -ied/-ed/-en/-ing/-s stripped."""
    if token in IRREGULAR:
        return IRREGULAR[token]
    for suffix, repl in (("ied", "y"), ("ised", "ise"), ("ized", "ize"), ("ed", ""), ("ing", ""), ("es", ""), ("s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            stem = token[: -len(suffix)] + repl
            if stem in VERB_KIND or stem + "e" in VERB_KIND:
                return stem if stem in VERB_KIND else stem + "e"
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[:-1] in VERB_KIND:  # "okayed", "relaxed", "bumped"
                return stem[:-1]
    return token


def _is_past(token: str) -> bool:
    return token in IRREGULAR or token.endswith(PAST_ENDINGS)


def _verbs(tokens: list[str]) -> list[tuple[int, str]]:
    """(index, action-verb lemma) for each past-form action verb, particles joined ("signed off")."""
    out = []
    for i, tok in enumerate(tokens):
        if not _is_past(tok):
            continue
        lem = lemma(tok)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        lem = PARTICLES.get(nxt, {}).get(lem, lem)
        if lem in VERB_KIND:
            out.append((i, lem))
    return out


def action_statements(text: str) -> list[Statement]:
    """Sentences reporting an action as done (see the module docstring), with the kind of action."""
    out = []
    for sentence in SENTENCE.split(text):
        low = sentence.lower()
        tokens = TOKEN.findall(low)
        for i, lem in _verbs(tokens):
            if GUARD & set(tokens[:i]):  # negated or hypothetical up to the verb; what follows it does not undo it
                continue
            before = tokens[max(0, i - 10): i]
            chain = list(reversed(before))
            aux_at = next((j for j, t in enumerate(chain) if t not in FILLER), None)
            passive = aux_at is not None and chain[aux_at] in AUX and OBJECTS & set(before)
            first_person = bool(FIRST_PERSON & set(tokens[max(0, i - 6): i]))
            if passive or first_person:
                out.append(Statement(kind="action", what=VERB_KIND[lem], words=" ".join(tokens[max(0, i - 4): i + 2]),
                                     sentence=sentence))
                break
        else:
            m = RESULTS.search(low)
            if m and OBJECTS & set(tokens) and not GUARD & set(TOKEN.findall(low[: m.start()])):
                out.append(Statement(kind="action", what="apply", words=m.group(), sentence=sentence))
    return out


def disputes(text: str) -> list[Statement]:
    """Sentences saying the outcome was wrong or the user is safe (see the module docstring)."""
    out = []
    for sentence in SENTENCE.split(text):
        low = " ".join(TOKEN.findall(sentence.lower()))
        for form, p in DISPUTES:
            m = p.search(low)
            if m and not NEGATED_DISPUTE.search(low[: m.end()]):
                out.append(Statement(kind="dispute", what=form, words=m.group(), sentence=sentence))
                break
    return out
