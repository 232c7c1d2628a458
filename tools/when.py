"""Plain time words ("this morning", "at 10:32") as exact windows, read in the analyst's time zone.

Windows are half-open, ``[start, end)``, returned in UTC. Calendar words use the
wall clock of the zone (so "today" is 23 hours long on the day clocks spring
forward); "last hour" and "last N hours" are absolute durations back from now.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from tools.errors import BadField

AROUND = timedelta(minutes=15)
ACCEPTED = ("this morning", "this afternoon", "this evening", "today", "yesterday", "last hour", "last N hours",
            "last 24 hours", "this week", "last week", "this month", "at HH:MM", "around HH:MM")
DAY_PARTS = {"this morning": (6, 12), "this afternoon": (12, 18), "this evening": (18, 24)}


class Window(BaseModel):
    """A resolved time range, ``start <= t < end`` in aware UTC; an open side is None (since/until given alone)."""

    phrase: str | None
    start: datetime | None
    end: datetime | None


Span = tuple[datetime, datetime]


def _at(d: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    if hour == 24:
        return datetime.combine(d + timedelta(days=1), time(0, 0), tzinfo=tz)
    return datetime.combine(d, time(hour, minute), tzinfo=tz)


def _day_part(m: re.Match[str], now: datetime, tz: ZoneInfo) -> Span:
    lo, hi = DAY_PARTS[m.group(0)]
    today = now.astimezone(tz).date()
    return _at(today, lo, 0, tz), _at(today, hi, 0, tz)


def _day(m: re.Match[str], now: datetime, tz: ZoneInfo) -> Span:
    d = now.astimezone(tz).date() - timedelta(days=1 if m.group(0) == "yesterday" else 0)
    return _at(d, 0, 0, tz), _at(d, 24, 0, tz)


def _hours(m: re.Match[str], now: datetime, tz: ZoneInfo) -> Span:
    n = int(m.group(1) or 1)
    if not 1 <= n <= 24 * 31:
        raise BadField("when", f"last {n} hours: give between 1 and {24 * 31} hours")
    return now - timedelta(hours=n), now


def _week(m: re.Match[str], now: datetime, tz: ZoneInfo) -> Span:
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday()) - timedelta(weeks=1 if m.group(1) == "last" else 0)
    return _at(monday, 0, 0, tz), _at(monday + timedelta(weeks=1), 0, 0, tz)


def _month(m: re.Match[str], now: datetime, tz: ZoneInfo) -> Span:
    first = now.astimezone(tz).date().replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return _at(first, 0, 0, tz), _at(nxt, 0, 0, tz)


def _clock(m: re.Match[str], now: datetime, tz: ZoneInfo) -> Span:
    hour, minute = int(m.group(2)), int(m.group(3))
    if hour > 23 or minute > 59:
        raise BadField("when", f"{m.group(0)!r} is not a time of day (HH:MM, 00:00 to 23:59)")
    t = _at(now.astimezone(tz).date(), hour, minute, tz)
    return t - AROUND, t + AROUND


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], datetime, ZoneInfo], Span]], ...] = (
    (re.compile(r"this (morning|afternoon|evening)"), _day_part),
    (re.compile(r"today|yesterday"), _day),
    (re.compile(r"(?:in the )?(?:last|past) (?:(\d{1,4}) hours?|hour)"), _hours),
    (re.compile(r"(this|last) week"), _week),
    (re.compile(r"this month"), _month),
    (re.compile(r"(at|around|about) (\d{1,2}):(\d{2})"), _clock),
)


def normalize_when(text: str) -> str:
    """Lower-case, squeeze spaces, and check the phrase is understood (without needing a clock).

    Raises:
        BadField: on ``when``, listing the accepted phrases.
    """
    phrase = " ".join(text.lower().split())
    probe = datetime(2000, 1, 3, 12, tzinfo=UTC)
    for pattern, resolve in _PATTERNS:
        m = pattern.fullmatch(phrase)
        if m:
            resolve(m, probe, ZoneInfo("UTC"))  # range checks (hour 25, 0 hours) happen here
            return phrase
    raise BadField("when", f"{text!r} is not a time phrase I understand; use one of: {', '.join(ACCEPTED)}, "
                           "or give since/until")


def resolve_when(text: str, *, now: datetime, tz: ZoneInfo) -> Window:
    """The window a phrase means at ``now`` in ``tz``.

    Args:
        text: the phrase, e.g. "this morning", "around 10:32", "last week".
        now: an aware instant (the tool context's clock).
        tz: the zone whose wall clock the phrase refers to.

    Raises:
        BadField: on ``when`` for a phrase not in :data:`ACCEPTED`.
    """
    phrase = normalize_when(text)
    for pattern, resolve in _PATTERNS:
        m = pattern.fullmatch(phrase)
        if m:
            start, end = resolve(m, now, tz)
            return Window(phrase=phrase, start=start.astimezone(UTC), end=end.astimezone(UTC))
    raise AssertionError("normalize_when accepted a phrase no pattern resolves")  # pragma: no cover
