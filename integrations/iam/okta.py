"""Okta Management API adapter (an API token, ``Authorization: SSWS <token>``, or OAuth 2.0 for a service
app with a private key JWT, :func:`private_key_jwt_auth`).

- revoke_session: ``GET /api/v1/sessions/{sessionId}`` first (404: the session is over already), then
  ``DELETE /api/v1/users/{userId}/sessions?oauthTokens=true`` (204), which also revokes the user's OAuth tokens.
  The session id is Okta's own (the System Log's ``authenticationContext.externalSessionId``).
- grant_exception: membership of the exception group the sign-on policy excludes: the user's groups
  (``GET /api/v1/users/{userId}/groups``) are read first, then ``PUT /api/v1/groups/{groupId}/users/{userId}``
  (204); end_exception: the same read, then ``DELETE`` on the same path (204).
- confirm_denial in mode ``suspend``: the user's ``status`` is read (``GET /api/v1/users/{id}``), then
  ``POST /api/v1/users/{userId}/lifecycle/suspend`` (200) unless already ``SUSPENDED``.

The subject is looked up by login or id (``GET /api/v1/users/{login}``) to get Okta's user id.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from agent.iam_types import ActionMode, Capabilities, IamAction, IamRequest, IamResult, IamStatus
from integrations.iam.http import Auth, StaticAuth, TokenAuth, VendorBusy, VendorHttp, VendorRefused

_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
MAX_PAGES = 20
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPES = "okta.users.manage okta.groups.manage okta.sessions.read"


def _q(v: str) -> str:
    return quote(v, safe="")


class OktaIam:
    name = "okta"

    def __init__(self, *, org_url: str, exception_group_id: str, capabilities: Capabilities,
                 api_token: str | None = None, auth: Auth | None = None, **http_options: Any):
        """Authenticate with ``api_token`` (SSWS) or ``auth`` (e.g. :func:`private_key_jwt_auth`)."""
        self.capabilities = capabilities
        self.group_id = exception_group_id
        self.http = VendorHttp(vendor="Okta", base_url=org_url, auth=auth or StaticAuth(f"SSWS {api_token}"),
                               **http_options)

    def close(self) -> None:
        self.http.close()

    def execute(self, request: IamRequest, *, now: datetime) -> IamResult:
        try:
            status, detail = self.http.run(lambda: self._run(request))
        except VendorBusy as exc:
            return IamResult(status=IamStatus.TRANSIENT, adapter=self.name, error=str(exc),
                             retry_at=now + timedelta(seconds=exc.delay_s))
        except VendorRefused as exc:
            return IamResult(status=IamStatus.FAILED, adapter=self.name, error=str(exc),
                             detail={"http_status": exc.status})
        return IamResult(status=status, adapter=self.name, detail=detail)

    def _user(self, login: str | None) -> dict[str, Any]:
        if not login:
            raise VendorRefused("Okta: the request names no user", status=0)
        r = self.http.call("GET", f"/api/v1/users/{_q(login)}", ok=(200,))
        user: dict[str, Any] = r.json()
        return user

    def _in_group(self, uid: str) -> bool:
        url: str | None = f"/api/v1/users/{_q(uid)}/groups?limit=200"
        for _ in range(MAX_PAGES):
            if url is None:
                break
            r = self.http.call("GET", url, ok=(200,))
            if any(g.get("id") == self.group_id for g in r.json()):
                return True
            m = _NEXT.search(r.headers.get("Link", ""))
            url = m.group(1) if m else None
        return False

    def _run(self, req: IamRequest) -> tuple[IamStatus, dict[str, Any]]:
        mode = self.capabilities.mode(req.action)
        if req.action is IamAction.REVOKE_SESSION and req.session_id:
            r = self.http.call("GET", f"/api/v1/sessions/{_q(req.session_id)}", ok=(200, 404))
            if r.status_code == 404:
                return IamStatus.ALREADY_APPLIED, {"session_id": req.session_id, "session": "not active"}
            uid = self._user(req.user_id)["id"]
            self.http.call("DELETE", f"/api/v1/users/{_q(uid)}/sessions", params={"oauthTokens": "true"}, ok=(204,))
            return IamStatus.APPLIED, {"okta_user_id": uid, "session_id": req.session_id, "oauth_tokens": "revoked"}
        if req.action in (IamAction.GRANT_EXCEPTION, IamAction.END_EXCEPTION):
            uid = self._user(req.user_id)["id"]
            member = self._in_group(uid)
            want = req.action is IamAction.GRANT_EXCEPTION
            detail = {"okta_user_id": uid, "group_id": self.group_id, "member": want}
            if member == want:
                return IamStatus.ALREADY_APPLIED, detail
            path = f"/api/v1/groups/{_q(self.group_id)}/users/{_q(uid)}"
            self.http.call("PUT" if want else "DELETE", path, ok=(204,))
            return IamStatus.APPLIED, detail
        if req.action is IamAction.CONFIRM_DENIAL and mode is ActionMode.SUSPEND:
            user = self._user(req.user_id)
            detail = {"okta_user_id": user["id"], "user_status": "SUSPENDED"}
            if user.get("status") == "SUSPENDED":
                return IamStatus.ALREADY_APPLIED, detail
            self.http.call("POST", f"/api/v1/users/{_q(user['id'])}/lifecycle/suspend", ok=(200,))
            return IamStatus.APPLIED, detail
        raise VendorRefused(f"Okta adapter does not execute {req.action.value} in mode {mode.value}", status=0)


def private_key_jwt_auth(*, org_url: str, client_id: str, private_key_pem: str, key_id: str | None = None,
                         scopes: str = SCOPES, timeout: float = 10.0,
                         wall: Callable[[], float] = time.time) -> TokenAuth:
    """OAuth 2.0 for an Okta API service app: a client credentials token from the org authorization server
    (``POST /oauth2/v1/token``), the client authenticated by a JWT signed with its private key (RS256,
    ``iss`` = ``sub`` = client id, ``aud`` = the token URL, five minutes). Tokens are Bearer tokens."""
    base = org_url.rstrip("/")
    client = httpx.Client(base_url=base, timeout=timeout, headers={"Accept": "application/json"})

    def fetch() -> tuple[str, float]:
        now = int(wall())
        assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": f"{base}/oauth2/v1/token", "iat": now,
                                "exp": now + 300, "jti": uuid.uuid4().hex}, private_key_pem, algorithm="RS256",
                               headers={"kid": key_id} if key_id else None)
        try:
            r = client.post("/oauth2/v1/token", data={"grant_type": "client_credentials", "scope": scopes,
                                                      "client_assertion_type": ASSERTION_TYPE,
                                                      "client_assertion": assertion})
        except httpx.TransportError as exc:
            raise VendorBusy(f"Okta token: {type(exc).__name__}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise VendorBusy(f"Okta token endpoint answered {r.status_code}")
        if r.status_code != 200:
            raise VendorRefused(f"Okta refused the client assertion ({r.status_code}): {r.text[:200]}",
                                status=r.status_code)
        body = r.json()
        return str(body["access_token"]), float(body.get("expires_in", 300))

    return TokenAuth(fetch, wall=wall)
