"""Polling the Okta System Log (``GET /api/v1/logs``): the first request reads ``since`` a start instant in
ascending order; every answer's ``Link: <...>; rel="next"`` (an ``after`` cursor) is where the next request
starts, even when the page was empty (Okta's polling contract). The cursor kept is that next link."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from integrations.ingest.observed import Vendor
from integrations.ingest.pull import Page, SourceUnavailable, Throttle, iso, same_origin


@dataclass
class OktaLogs:
    """The System Log of one Okta org, read with an SSWS API token."""

    org_url: str
    token: str
    start: datetime
    client: httpx.Client
    limit: int = 1000
    throttle: Throttle = field(default_factory=Throttle)
    vendor: Vendor = Vendor.OKTA

    @property
    def name(self) -> str:
        return f"okta:{self.org_url.rstrip('/')}"

    def first_url(self) -> str:
        q = httpx.QueryParams({"since": iso(self.start), "sortOrder": "ASCENDING", "limit": str(self.limit)})
        return f"{self.org_url.rstrip('/')}/api/v1/logs?{q}"

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        url = (cursor or {}).get("next") or self.first_url()
        headers = {"Authorization": f"SSWS {self.token}", "Accept": "application/json"}
        while True:
            r = self.throttle.get(self.client, url, headers=headers)
            try:
                events = r.json()
            except ValueError:
                raise SourceUnavailable("the System Log page is not JSON") from None
            if not isinstance(events, list):
                raise SourceUnavailable("the System Log page is not a JSON array of events")
            nxt = r.links.get("next", {}).get("url")
            if nxt is not None and not same_origin(nxt, self.org_url):
                raise SourceUnavailable(f"refusing a next link off the Okta org: {nxt.split('?')[0]}")
            yield Page(records=events, cursor={"next": nxt or url})
            if not events or nxt is None or nxt == url:
                return  # caught up: the next poll starts from the last next link
            url = nxt
