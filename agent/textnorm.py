"""Text as people read it: the verifier checks this form of a narrative, never the raw code points.

Three things let a text read one way and match another (Unicode TS #39, UTS #55):

* compatibility forms: fullwidth ``ａｐｐｒｏｖｅｄ`` or the ``ﬁ`` ligature read as ASCII; NFKC folds them;
* invisible characters: zero-width spaces and joiners, the soft hyphen, word joiners, bidi embeddings,
  overrides and isolates (all general category Cf) and variation selectors split a keyword for a pattern
  while the reader sees it whole; they are removed;
* confusables: Cyrillic ``а`` and Greek ``ο`` look like Latin ``a`` and ``o``. Each non-ASCII character
  with an ASCII prototype in the TS #39 confusables data (as shipped in the ``confusable-homoglyphs``
  package: no download at run time) is folded to it. Only non-ASCII characters are folded: the full
  skeleton also maps ASCII onto ASCII (``rn`` to ``m``, ``I`` to ``l``), which would corrupt the very words
  the checks look for.

A word mixing Latin with another script's letters (``pаypal`` with a Cyrillic ``а``) has no innocent use
in an explanation, so :func:`mixed_script_words` names each one for the verifier to refuse.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

import confusable_homoglyphs
from confusable_homoglyphs import categories

WORD = re.compile(r"\w+")
# Scripts that legitimately share a word with Latin or each other (Japanese text mixes these; TS #39's
# "highly restrictive" level allows Latin with Han, Hiragana and Katakana).
_CJK = frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"})
_NO_SCRIPT = frozenset({"COMMON", "INHERITED", "Unknown"})
_VARIATION_SELECTORS = {*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or ord(ch) in _VARIATION_SELECTORS or ch == "\u034f"


@cache
def _prototypes() -> dict[str, str]:
    """Non-ASCII character -> its ASCII prototype, from the packaged TS #39 confusables table."""
    path = Path(confusable_homoglyphs.__file__).with_name("confusables.json")
    table: dict[str, list[dict[str, str]]] = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for ch, glyphs in table.items():
        if len(ch) != 1 or ch.isascii():
            continue
        ascii_glyph = next((g["c"] for g in glyphs if g["c"].isascii() and g["c"].isalnum()), None)
        if ascii_glyph is not None:
            out[ch] = ascii_glyph
    return out


def visible(text: str) -> str:
    """NFKC, then without the invisible characters (and NFKC again: removing one can join a sequence)."""
    once = unicodedata.normalize("NFKC", text)
    return unicodedata.normalize("NFKC", "".join(ch for ch in once if not _invisible(ch)))


def fold(text: str) -> str:
    """The text as read: :func:`visible`, then each confusable non-ASCII character folded to ASCII."""
    shown = visible(text)
    if shown.isascii():
        return shown
    table = _prototypes()
    return "".join(table.get(ch, ch) for ch in shown)


def scripts(word: str) -> frozenset[str]:
    """The scripts of a word's letters (Common and Inherited characters, digits and marks, not counted)."""
    return frozenset(categories.alias(ch) for ch in word) - _NO_SCRIPT


def mixed_script_words(text: str) -> list[str]:
    """Words of the visible text whose letters come from more than one script (beyond the Japanese mix)."""
    out = []
    for m in WORD.finditer(visible(text)):
        word = m.group()
        if word.isascii():
            continue
        found = scripts(word)
        if len(found) > 1 and not found <= _CJK:
            out.append(word)
    return list(dict.fromkeys(out))


def hidden_characters(text: str) -> int:
    """How many invisible characters the raw text carries (they are removed before checking)."""
    return sum(1 for ch in unicodedata.normalize("NFKC", text) if _invisible(ch))
