"""How often the language model's answer was not used, by stage and reason, since the process started.

:class:`agent.deps.AgentDeps` reports each fallback through ``on_fallback``; ``/metrics`` exposes the
counts as ``glassgate_llm_fallbacks{stage, reason}`` (integrations/api/metrics.py).
"""

from __future__ import annotations

import threading
from collections import Counter

_COUNTS: Counter[tuple[str, str]] = Counter()
_LOCK = threading.Lock()


def count(stage: str, reason: str) -> None:
    """One fallback of ``stage`` (planner or narrator) for ``reason`` (an agent.llm_types.FallbackReason)."""
    with _LOCK:
        _COUNTS[(stage, reason)] += 1


def snapshot() -> dict[tuple[str, str], int]:
    with _LOCK:
        return dict(_COUNTS)
