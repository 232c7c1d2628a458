"""Polling Microsoft Graph sign-ins (``GET /auditLogs/signIns``) with ``$filter=createdDateTime ge ...``
ascending, following ``@odata.nextLink``; tokens by the client-credentials flow of ``msal``. The cursor kept
is the latest ``createdDateTime`` taken and the ids taken at that instant (``ge`` returns them again)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from integrations.ingest.observed import Vendor
from integrations.ingest.pull import Page, SourceUnavailable, Throttle, iso, same_origin

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class MsalTokens:
    """Application tokens for Graph from msal's ConfidentialClientApplication (cached by msal until expiry).
    ``instance_discovery=False`` keeps msal from asking Microsoft about the authority (air-gapped, and the
    tests' loopback authority); msal still insists on an https authority."""

    def __init__(self, *, authority_host: str, tenant_id: str, client_id: str, client_secret: str,
                 http_client: httpx.Client):
        import msal  # imported here: only the Entra connector needs it

        self._app = msal.ConfidentialClientApplication(
            client_id, client_credential=client_secret, authority=f"{authority_host.rstrip('/')}/{tenant_id}",
            instance_discovery=False, http_client=http_client)

    def __call__(self) -> str:
        got = self._app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        if "access_token" not in got:
            raise SourceUnavailable(f"no Graph token: {got.get('error')}: {str(got.get('error_description'))[:200]}")
        return str(got["access_token"])


@dataclass
class GraphSignIns:
    """The sign-in log of one Entra tenant."""

    graph_url: str
    token: Callable[[], str]
    start: datetime
    client: httpx.Client
    top: int = 500
    throttle: Throttle = field(default_factory=Throttle)
    vendor: Vendor = Vendor.ENTRA

    @property
    def name(self) -> str:
        return f"entra:{self.graph_url.rstrip('/')}"

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        since = (cursor or {}).get("since") or iso(self.start)
        taken = set((cursor or {}).get("ids", []))
        q = httpx.QueryParams({"$filter": f"createdDateTime ge {since}", "$orderby": "createdDateTime asc",
                               "$top": str(self.top)})
        url = f"{self.graph_url.rstrip('/')}/auditLogs/signIns?{q}"
        while True:
            r = self.throttle.get(self.client, url, headers={"Authorization": f"Bearer {self.token()}",
                                                              "Accept": "application/json"})
            try:
                body = r.json()
                rows = body["value"]
                assert isinstance(rows, list)
            except (ValueError, KeyError, TypeError, AssertionError):
                raise SourceUnavailable("the signIns page is not a Graph collection ({\"value\": [...]})") from None
            fresh = [x for x in rows if not (isinstance(x, dict) and x.get("id") in taken)]
            for x in fresh:
                at = x.get("createdDateTime") if isinstance(x, dict) else None
                if not isinstance(at, str) or _instant(at) is None:
                    continue  # the mapper refuses it, naming createdDateTime
                if _instant(at) > _instant(since):  # type: ignore[operator]
                    since, taken = at, set()
                if _instant(at) == _instant(since) and isinstance(x.get("id"), str):
                    taken.add(x["id"])
            yield Page(records=fresh, cursor={"since": since, "ids": sorted(taken)})
            nxt = body.get("@odata.nextLink")
            if not nxt:
                return
            if not same_origin(nxt, self.graph_url):
                raise SourceUnavailable(f"refusing a nextLink off Graph: {nxt.split('?')[0]}")
            url = nxt


def _instant(ts: str) -> datetime | None:
    """Graph writes 2026-11-29T10:32:00Z and 2026-11-29T10:32:00.123Z alike: compare instants, not strings."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
