"""The sentence structure of an LLM draft: each sentence carries the claims it states.

A sentence with no claim, or with a claim the evidence does not hold, is dropped before the draft is
put together; the draft that remains goes through :func:`agent.verifier.verify` like any other. So a
model can pad its answer with prose, but only sentences tied to checked facts reach anyone. Kept apart
from the verifier's text checks so that both evolve without stepping on each other.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.llm_parse import schema_echo
from agent.llm_types import DroppedSentence, Fallback, FallbackReason, Sentence
from agent.narrative import Citation, Claim


def parse_sentences(obj: dict[str, Any]) -> tuple[list[Sentence], list[Citation]] | Fallback:
    """The sentences and citations of a parsed draft.

    Reads the sentence schema (``{"sentences": [{"text", "claims"}], "citations"}``) and, for servers and
    scripts that answer the older whole-text shape (``{"text", "claims", "citations"}``), treats that text
    as one sentence carrying all the claims.
    """
    echo = schema_echo(obj)
    if echo:
        return Fallback(reason=FallbackReason.SCHEMA_ECHO, detail=echo)
    raw = obj.get("sentences")
    if raw is None and isinstance(obj.get("text"), str):
        raw = [{"text": obj["text"], "claims": obj.get("claims") or []}]
    if not isinstance(raw, list) or not raw:
        return Fallback(reason=FallbackReason.UNPARSEABLE, detail="no sentences in the draft")
    try:
        sentences = [Sentence.model_validate(s) for s in raw]
        citations = [Citation.model_validate(c) for c in obj.get("citations") or []]
    except (ValidationError, TypeError) as exc:
        n = exc.error_count() if isinstance(exc, ValidationError) else 1
        return Fallback(reason=FallbackReason.UNPARSEABLE, detail=f"the draft does not match its schema ({n} error(s))")
    return sentences, citations


def tie(sentences: list[Sentence]) -> tuple[list[Sentence], list[DroppedSentence]]:
    """(kept, dropped): a sentence that states no claim is dropped. A sentence whose claim the evidence
    contradicts is kept, so that :func:`agent.verifier.verify` refuses the whole draft: a false fact is a
    failed draft, not padding to trim."""
    kept, dropped = [], []
    for s in sentences:
        if not s.text.strip():
            continue
        if not s.claims:
            dropped.append(DroppedSentence(text=s.text[:300], why="states no claim"))
            continue
        kept.append(s)
    return kept, dropped


def claims_of(sentences: list[Sentence]) -> list[Claim]:
    return [c for s in sentences for c in s.claims]


__all__ = ["claims_of", "parse_sentences", "tie"]
