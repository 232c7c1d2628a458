"""JSON parsing with bounds checked at parse time: nesting depth and the length of integer literals.

``json.loads`` recurses per nesting level (200,000 ``[`` exhaust the interpreter's stack) and turns a
5,000-digit integer into a ``ValueError`` that is not a ``JSONDecodeError``; both used to escape as 500s.
The depth is measured before parsing, over the bytes outside strings, and integers longer than
:data:`MAX_INT_DIGITS` digits are refused by the parser's own hook, before any conversion.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

MAX_DEPTH = 64
MAX_INT_DIGITS = 24  # more than any count, byte total or epoch-millisecond value an event can carry

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_OPEN = list(b"[{")
_CLOSE = list(b"]}")


class JsonBoundsError(ValueError):
    """The document is nested deeper, or holds a longer integer, than this service accepts."""


def depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (strings are skipped; no parsing)."""
    skeleton = _STRINGS.sub(b'""', data)
    b = np.frombuffer(skeleton, dtype=np.uint8)
    steps = np.isin(b, _OPEN).astype(np.int32) - np.isin(b, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonBoundsError(f"an integer has {len(literal.lstrip('-'))} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(literal)


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON within the bounds.

    Raises:
        JsonBoundsError: nested deeper than ``max_depth`` or an integer literal too long.
        json.JSONDecodeError, UnicodeDecodeError: not JSON / not UTF-8, as ``json.loads``.
    """
    raw = data.encode() if isinstance(data, str) else data
    got = depth(raw)
    if got > max_depth:
        raise JsonBoundsError(f"the document is nested {got} levels deep; at most {max_depth} are accepted")
    text = raw.decode("utf-8")
    try:
        return json.loads(text, parse_int=_int)
    except RecursionError:  # unreachable after the depth check; kept so it can never become a 500
        raise JsonBoundsError(f"the document is nested too deeply; at most {max_depth} levels are accepted") from None
