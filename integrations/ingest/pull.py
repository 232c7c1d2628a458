"""What the pull connectors share: a page of vendor records with the cursor after it, throttling (429 with
``Retry-After`` or Okta's ``X-Rate-Limit-Reset``) and the refusal to follow a paging link off the vendor's
origin (the link would carry the credential elsewhere)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from integrations.ingest.observed import Vendor

MAX_WAIT_S = 300.0
MAX_THROTTLES = 6


class SourceUnavailable(Exception):
    """The vendor API failed (5xx, a network error, too many throttles, a malformed page); ``reason`` says how.
    The cursor stays after the last page taken, so the next poll reads the failed page again."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Page:
    records: list[Any]
    cursor: dict[str, Any]  # where to resume after this page


class LogSource(Protocol):
    @property
    def vendor(self) -> Vendor: ...

    @property
    def name(self) -> str: ...  # the cursor's key

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]: ...


@dataclass
class Throttle:
    """How long to wait on a 429, from the vendor's headers; ``waits`` records every wait asked for."""

    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    waits: list[float] = field(default_factory=list)

    def wait_s(self, r: httpx.Response) -> float:
        retry = r.headers.get("retry-after")
        if retry is not None:
            try:
                return max(0.0, float(retry))
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(retry).timestamp() - self.now())
                except (TypeError, ValueError):
                    pass
        reset = r.headers.get("x-rate-limit-reset")
        if reset is not None:
            try:
                return max(0.0, float(reset) - self.now())
            except ValueError:
                pass
        return 1.0

    def get(self, client: httpx.Client, url: str, **kw: Any) -> httpx.Response:
        """GET ``url``, waiting out 429s as the vendor asks (capped); raise SourceUnavailable on anything else
        that is not a 200."""
        for _ in range(MAX_THROTTLES + 1):
            try:
                r = client.get(url, **kw)
            except httpx.HTTPError as exc:
                raise SourceUnavailable(f"GET {url.split('?')[0]} failed: {type(exc).__name__}: {exc}") from None
            if r.status_code != 429:
                if r.status_code != 200:
                    raise SourceUnavailable(f"GET {url.split('?')[0]} answered {r.status_code}: {r.text[:200]}")
                return r
            wait = min(self.wait_s(r), MAX_WAIT_S)
            self.waits.append(wait)
            self.sleep(wait)
        raise SourceUnavailable(f"GET {url.split('?')[0]} still throttled after {MAX_THROTTLES} waits")


def same_origin(url: str, base: str) -> bool:
    a, b = httpx.URL(url), httpx.URL(base)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
