"""The HTTP client every IAM adapter uses: bounded calls, rate limits honoured, outcomes typed.

A 429 or 5xx answer, a timeout or a refused connection is *busy*: the adapter's step (its read, then its
write) is retried in place (tenacity, :meth:`VendorHttp.run`) after the time the vendor names
(``Retry-After`` in seconds or as an HTTP date; Okta's ``X-Rate-Limit-Reset``, UTC epoch seconds) or a short
exponential wait, as long as the whole step stays within its budget (``budget_s``, 10 s by default). A wait the
budget cannot cover ends the step at once with :class:`VendorBusy` carrying that wait, which the executor
stores as the action's next attempt time. Any other 4xx
is :class:`VendorRefused` (final). A 401 from a token-based vendor refreshes the token once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from agent.iam_attempts import backoff

T = TypeVar("T")


class VendorBusy(Exception):
    """Nothing was applied; try again at ``retry_at`` (None: the vendor named no time)."""

    def __init__(self, message: str, *, retry_at: datetime | None = None):
        super().__init__(message)
        self.retry_at = retry_at
        self.delay_s = 0.0  # set by VendorHttp.run: how long from now (the adapter adds it to its clock)


class VendorRefused(Exception):
    """The vendor refused the request (a 4xx other than 429); ``status`` and the vendor's error body say why."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


class Auth(Protocol):
    def headers(self) -> dict[str, str]: ...

    def invalidate(self) -> None: ...


class StaticAuth:
    """A fixed ``Authorization`` header (Okta's ``SSWS <token>``)."""

    def __init__(self, value: str):
        self._value = value

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._value}

    def invalidate(self) -> None:
        pass


class TokenAuth:
    """A bearer token from ``fetch`` (the token and its lifetime in seconds), kept until a minute before it
    expires or until the vendor answers 401. ``fetch`` raises VendorBusy or VendorRefused like a call."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], *, wall: Callable[[], float] = time.time):
        self._fetch, self._wall = fetch, wall
        self._token: str | None = None
        self._until = 0.0

    def headers(self) -> dict[str, str]:
        if self._token is None or self._wall() >= self._until:
            token, lifetime = self._fetch()
            self._token, self._until = token, self._wall() + max(0.0, lifetime - 60)
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        self._token = None


def retry_at_of(r: httpx.Response, *, wall: float) -> datetime | None:
    """When the vendor said to come back: ``Retry-After`` (seconds or HTTP date), else ``X-Rate-Limit-Reset``."""
    now = datetime.fromtimestamp(wall, UTC)
    ra = r.headers.get("Retry-After", "").strip()
    if ra:
        if ra.isdigit():
            return now + timedelta(seconds=int(ra))
        try:
            return parsedate_to_datetime(ra).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    reset = r.headers.get("X-Rate-Limit-Reset", "").strip()
    if reset.isdigit():
        return datetime.fromtimestamp(int(reset), UTC)
    return None


class VendorHttp:
    """One vendor's base URL, authentication and retry budget."""

    def __init__(self, *, vendor: str, base_url: str, auth: Auth, timeout: float = 10.0, budget_s: float = 10.0,
                 max_attempts: int = 4, sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time, transport: httpx.BaseTransport | None = None):
        self.vendor, self.auth, self.budget_s, self.max_attempts = vendor, auth, budget_s, max_attempts
        self._sleep, self._wall = sleep, wall
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                    headers={"Accept": "application/json"})
        self.waits: list[float] = []  # every in-call wait, for the tests and the attempt's detail

    def close(self) -> None:
        self._client.close()

    def _once(self, method: str, path: str, ok: Collection[int], kwargs: dict[str, Any]) -> httpx.Response:
        for fresh in (False, True):
            try:
                r = self._client.request(method, path, headers=self.auth.headers(), **kwargs)
            except httpx.TransportError as exc:
                raise VendorBusy(f"{self.vendor} {method} {path}: {type(exc).__name__}") from None
            if r.status_code == 401 and not fresh:
                self.auth.invalidate()  # an expired token: get a new one, once
                continue
            break
        if r.status_code in ok:
            return r
        if r.status_code == 429 or r.status_code >= 500:
            raise VendorBusy(f"{self.vendor} {method} {path} answered {r.status_code}",
                             retry_at=retry_at_of(r, wall=self._wall()))
        raise VendorRefused(f"{self.vendor} {method} {path} refused with {r.status_code}: {r.text[:300]}",
                            status=r.status_code)

    def call(self, method: str, path: str, *, ok: Collection[int] = (200, 204), **kwargs: Any) -> httpx.Response:
        """One request, not retried (the adapter retries its whole read-then-write step with :meth:`run`).

        Raises:
            VendorBusy: 429, 5xx, a timeout or a broken connection.
            VendorRefused: a 4xx other than 429.
        """
        return self._once(method, path, ok, kwargs)

    def run(self, step: Callable[[], T]) -> T:
        """Run ``step`` (an adapter's read-then-write), again while the vendor is busy, within the budget.
        A step is retried from its read, so a write whose answer was lost is found applied, not repeated.

        Raises:
            VendorBusy: still busy when the budget or the attempts ran out, or the vendor's wait exceeds them;
                ``delay_s`` is the wait the vendor named, or a backoff when it named none.
            VendorRefused: from ``step``, at once.
        """
        start = self._wall()

        def stop(rs: RetryCallState) -> bool:
            spent = self._wall() - start
            return rs.attempt_number >= self.max_attempts or spent + self._wanted(rs) > self.budget_s

        def sleep(seconds: float) -> None:
            self.waits.append(seconds)
            self._sleep(seconds)

        retrying = Retrying(retry=retry_if_exception_type(VendorBusy), wait=self._wanted, stop=stop, sleep=sleep,
                            reraise=True)
        try:
            return retrying(step)
        except VendorBusy as exc:
            now = self._wall()  # the vendor named no time: back off
            exc.delay_s = max(0.0, exc.retry_at.timestamp() - now) if exc.retry_at is not None else \
                backoff(1).total_seconds()
            raise

    def _wanted(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        at = exc.retry_at if isinstance(exc, VendorBusy) else None
        if at is not None:
            return max(0.0, at.timestamp() - self._wall())
        return min(2.0, 0.2 * 2 ** (rs.attempt_number - 1))
