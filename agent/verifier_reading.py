"""The verifier's checks of how a narrative reads (agent/textnorm.py, agent/claim_lexicon.py): mixed-script
words, and action reports and disputes in paraphrase. Each returns the failures it found, in the verifier's
record format."""

from __future__ import annotations

from typing import Any

from agent.claim_lexicon import action_statements, disputes
from agent.narrative import VerificationFailure
from agent.textnorm import mixed_script_words, scripts, visible


def mixed_scripts(raw: str, evidence_strings: list[str]) -> list[VerificationFailure]:
    """A word mixing scripts is refused unless it is quoted from the evidence (a user agent may hold one)."""
    quoted = set(mixed_script_words("\n".join(evidence_strings)))
    return [VerificationFailure(check="script", detail=f"{word!r} mixes {' and '.join(sorted(_scripts(word)))} letters: "
                                "it reads as one word and matches as another")
            for word in mixed_script_words(raw) if word not in quoted]


def _scripts(word: str) -> set[str]:
    return {x.title() for x in scripts(visible(word))}


def paraphrased_disputes(own: str, d: dict[str, Any]) -> list[VerificationFailure]:
    """Disputes the patterns above miss, recognised in paraphrase: against a denial or step-up any form; with no
    decision in the evidence, a reversal or an error said of a decision (a safety remark needs a decision)."""
    out = []
    for st in disputes(own):
        if d.get("outcome") in ("deny", "step_up") or (not d and st.what in ("reversal", "error")):
            what = f"a {d['outcome']} that the evidence supports" if d else "a decision the evidence does not hold"
            out.append(VerificationFailure(check="contradiction", detail=f"the text disputes {what} "
                                           f"({st.what}: {st.words!r})"))
    return out[:1]


def paraphrased_actions(own: str, d: dict[str, Any]) -> list[VerificationFailure]:
    """Action reports in paraphrase; one stands only when the evidence records it (an exception in force, or the
    approved revocation of the decision's session)."""
    revoked = any(isinstance(r, dict) and r.get("rule_id") == "session-revoked" for r in d.get("rules") or [])
    for st in action_statements(own):
        low = st.sentence.lower()
        grounded = (bool(d.get("exception")) and "exception" in low and st.what in ("approve", "apply")) or (
            revoked and "session" in low and st.what == "revoke")
        if not grounded:
            return [VerificationFailure(check="action_claim", detail=f"the text reports an action as done "
                                        f"({st.what}: {st.words!r}); a narrative only explains, actions are proposals")]
    return []
