"""A small Microsoft Entra on 127.0.0.1 for the Entra adapter's tests: the identity platform's discovery
document and v2.0 token endpoint (client credentials, form-encoded; what msal sends), and the Graph v1.0
endpoints the adapter uses, after Graph's reference: users (``$select``), ``revokeSignInSessions`` (answering
200 ``{"value": true}`` as the service does, though the reference says 204), direct group memberships
(``memberOf/microsoft.graph.group``, paged with ``@odata.nextLink``), ``members/$ref`` add (``@odata.id``) and
remove, and risky users (``confirmCompromised``, ``dismiss``). Graph calls must carry a bearer token the token
endpoint issued; errors are Graph's ``{"error": {"code", "message"}}``.

msal only speaks https to a real authority host, so :class:`LoopbackHttp` is the HTTP client the tests give
msal: it carries msal's requests for ``https://login.microsoftonline.com`` to this server instead.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.fake_vendor import Answer, FakeVendor

AUTHORITY = "https://login.microsoftonline.com"
PAGE = 2


class FakeEntra(FakeVendor):
    def __init__(self, *, tenant: str, client_id: str, client_secret: str):
        super().__init__()
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.tokens: set[str] = set()
        self.users: dict[str, dict[str, Any]] = {}  # id -> user
        self.groups: dict[str, set[str]] = {}
        self.risk: dict[str, str] = {}  # user id -> riskState
        self.token_forms: list[dict[str, str]] = []

    def add_user(self, upn: str, *, uid: str) -> None:
        self.users[uid] = {"id": uid, "userPrincipalName": upn,
                           "signInSessionsValidFromDateTime": "2026-01-01T00:00:00Z"}

    def authorized(self, headers: dict[str, str], path: str) -> bool:
        if not path.startswith("/v1.0/"):
            return True  # discovery and token endpoints: the client authenticates in the form
        auth = headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.tokens

    def error(self, status: int, message: str) -> Answer:
        code = {404: "Request_ResourceNotFound", 400: "Request_BadRequest"}.get(status, "generalException")
        return status, {"error": {"code": code, "message": message}}, {}

    def _user(self, ref: str) -> dict[str, Any] | None:
        return self.users.get(ref) or next((u for u in self.users.values() if u["userPrincipalName"] == ref), None)

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: Any) -> Answer:
        t = re.escape(self.tenant)
        if method == "GET" and re.fullmatch(rf"/{t}/v2\.0/\.well-known/openid-configuration", path):
            base = f"{AUTHORITY}/{self.tenant}"
            return 200, {"token_endpoint": f"{base}/oauth2/v2.0/token",
                         "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                         "issuer": f"https://login.microsoftonline.com/{self.tenant}/v2.0"}, {}
        if method == "POST" and path == f"/{self.tenant}/oauth2/v2.0/token":
            form = {k: v[0] for k, v in parse_qs(body if isinstance(body, str) else "").items()}
            self.token_forms.append(form)
            want = {"grant_type": "client_credentials", "client_id": self.client_id,
                    "client_secret": self.client_secret, "scope": "https://graph.microsoft.com/.default"}
            if {k: form.get(k) for k in want} != want:
                return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"}, {}
            token = secrets.token_urlsafe(16)
            self.tokens.add(token)
            return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": token}, {}
        if method == "GET" and (m := re.fullmatch(r"/v1\.0/users/([^/]+)", path)):
            u = self._user(m.group(1))
            if u is None:
                return self.error(404, f"Resource '{m.group(1)}' does not exist or one of its queried reference-property "
                                  "objects are not present.")
            fields = query.get("$select", [""])[0].split(",")
            return 200, {k: u[k] for k in fields if k in u}, {}
        if method == "POST" and (m := re.fullmatch(r"/v1\.0/users/([^/]+)/revokeSignInSessions", path)):
            u = self.users.get(m.group(1))
            if u is None:
                return self.error(404, "user not found")
            u["signInSessionsValidFromDateTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return 200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": True}, {}
        if method == "GET" and (m := re.fullmatch(r"/v1\.0/users/([^/]+)/memberOf/microsoft\.graph\.group", path)):
            mine = sorted(g for g, members in self.groups.items() if m.group(1) in members)
            skip = int(query.get("$skiptoken", ["0"])[0])
            out: dict[str, Any] = {"value": [{"id": g} for g in mine[skip:skip + PAGE]]}
            if skip + PAGE < len(mine):
                out["@odata.nextLink"] = (f"{self.url}/v1.0/users/{m.group(1)}/memberOf/microsoft.graph.group"
                                          f"?$select=id&$skiptoken={skip + PAGE}")
            return 200, out, {}
        if method == "POST" and (m := re.fullmatch(r"/v1\.0/groups/([^/]+)/members/\$ref", path)):
            ref = (body or {}).get("@odata.id", "") if isinstance(body, dict) else ""
            self.check(headers.get("content-type") == "application/json", f"POST {path}: not JSON")
            got = re.fullmatch(r"https?://[^/]+/v1\.0/directoryObjects/([^/]+)", ref)
            if not got or set(body) != {"@odata.id"}:
                return self.error(400, "Invalid object identifier")
            gid, uid = m.group(1), got.group(1)
            if gid not in self.groups or uid not in self.users:
                return self.error(404, "group or directory object not found")
            if uid in self.groups[gid]:
                return self.error(400, "One or more added object references already exist for the following "
                                  "modified properties: 'members'.")
            self.groups[gid].add(uid)
            return 204, None, {}
        if method == "DELETE" and (m := re.fullmatch(r"/v1\.0/groups/([^/]+)/members/([^/]+)/\$ref", path)):
            gid, uid = m.groups()
            if uid not in self.groups.get(gid, set()):
                return self.error(404, "member not found")
            self.groups[gid].discard(uid)
            return 204, None, {}
        if method == "GET" and (m := re.fullmatch(r"/v1\.0/identityProtection/riskyUsers/([^/]+)", path)):
            if m.group(1) not in self.risk:
                return self.error(404, "risky user not found")
            return 200, {"id": m.group(1), "riskState": self.risk[m.group(1)], "riskLevel": "high"}, {}
        if method == "POST" and (m := re.fullmatch(r"/v1\.0/identityProtection/riskyUsers/(confirmCompromised|dismiss)",
                                                   path)):
            if not (isinstance(body, dict) and set(body) == {"userIds"} and isinstance(body["userIds"], list)):
                return self.error(400, "userIds is required")
            for uid in body["userIds"]:
                self.risk[uid] = "confirmedCompromised" if m.group(1) == "confirmCompromised" else "dismissed"
            return 204, None, {}
        self.problems.append(f"{method} {path}: not an endpoint of this fake")
        return self.error(404, "Not found")


class LoopbackHttp:
    """msal's HTTP client in the tests: the authority's requests go to ``fake`` (same paths, same bodies)."""

    def __init__(self, fake: FakeEntra):
        self.fake = fake
        self._client = httpx.Client(timeout=5)

    def _url(self, url: str) -> str:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == AUTHORITY, f"msal asked {url}"
        return self.fake.url + parts.path + (f"?{parts.query}" if parts.query else "")

    def get(self, url: str, params: Any = None, headers: Any = None, **_kw: Any) -> httpx.Response:
        return self._client.get(self._url(url), params=params, headers=headers)

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_kw: Any) -> httpx.Response:
        return self._client.post(self._url(url), params=params, data=data, headers=headers)

    def close(self) -> None:
        self._client.close()
