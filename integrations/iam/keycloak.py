"""Keycloak admin REST adapter (a confidential client's service account; client credentials token from
``POST /realms/{realm}/protocol/openid-connect/token``).

- revoke_session: the user's sessions (``GET /admin/realms/{realm}/users/{id}/sessions``) are read first; when
  the session named, or any session started before the approval, is still there,
  ``POST /admin/realms/{realm}/users/{id}/logout`` (204) ends them all.
- grant_exception / end_exception: the user's groups (``GET .../users/{id}/groups``) are read first, then
  ``PUT`` / ``DELETE /admin/realms/{realm}/users/{id}/groups/{groupId}`` (204).

The subject is found by username (``GET /admin/realms/{realm}/users?username=...&exact=true``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from agent.iam_types import Capabilities, IamAction, IamRequest, IamResult, IamStatus
from integrations.iam.http import TokenAuth, VendorBusy, VendorHttp, VendorRefused

PAGE = 100
MAX_PAGES = 20


def _q(v: str) -> str:
    return quote(v, safe="")


class KeycloakIam:
    name = "keycloak"

    def __init__(self, *, base_url: str, realm: str, client_id: str, client_secret: str, exception_group_id: str,
                 capabilities: Capabilities, timeout: float = 10.0, **http_options: Any):
        self.capabilities, self.group_id, self.realm = capabilities, exception_group_id, realm
        self._token_client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._client_id, self._client_secret = client_id, client_secret
        self.http = VendorHttp(vendor="Keycloak", base_url=base_url, auth=TokenAuth(self._fetch_token),
                               timeout=timeout, **http_options)
        self._admin = f"/admin/realms/{_q(realm)}"

    def close(self) -> None:
        self.http.close()
        self._token_client.close()

    def _fetch_token(self) -> tuple[str, float]:
        path = f"/realms/{_q(self.realm)}/protocol/openid-connect/token"
        try:
            r = self._token_client.post(path, data={"grant_type": "client_credentials", "client_id": self._client_id,
                                                    "client_secret": self._client_secret})
        except httpx.TransportError as exc:
            raise VendorBusy(f"Keycloak token: {type(exc).__name__}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise VendorBusy(f"Keycloak token endpoint answered {r.status_code}")
        if r.status_code != 200:
            raise VendorRefused(f"Keycloak refused the client credentials ({r.status_code}): {r.text[:200]}",
                                status=r.status_code)
        body = r.json()
        return str(body["access_token"]), float(body.get("expires_in", 60))

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

    def _user_id(self, username: str | None) -> str:
        if not username:
            raise VendorRefused("Keycloak: the request names no user", status=0)
        r = self.http.call("GET", f"{self._admin}/users", params={"username": username, "exact": "true"}, ok=(200,))
        found = [u for u in r.json() if u.get("username") == username.lower() or u.get("username") == username]
        if not found:
            raise VendorRefused(f"Keycloak: no user {username!r} in realm {self.realm}", status=404)
        return str(found[0]["id"])

    def _in_group(self, uid: str) -> bool:
        for page in range(MAX_PAGES):
            r = self.http.call("GET", f"{self._admin}/users/{_q(uid)}/groups",
                               params={"first": page * PAGE, "max": PAGE}, ok=(200,))
            groups = r.json()
            if any(g.get("id") == self.group_id for g in groups):
                return True
            if len(groups) < PAGE:
                return False
        return False

    def _run(self, req: IamRequest) -> tuple[IamStatus, dict[str, Any]]:
        uid = self._user_id(req.user_id)
        if req.action is IamAction.REVOKE_SESSION:
            r = self.http.call("GET", f"{self._admin}/users/{_q(uid)}/sessions", ok=(200,))
            before = int(req.window_start.timestamp() * 1000) if req.window_start else None
            alive = [x for x in r.json() if x.get("id") == req.session_id
                     or (before is not None and int(x.get("start", 0)) < before)]
            detail = {"keycloak_user_id": uid, "sessions_ended": len(alive)}
            if not alive:
                return IamStatus.ALREADY_APPLIED, detail
            self.http.call("POST", f"{self._admin}/users/{_q(uid)}/logout", ok=(204,))
            return IamStatus.APPLIED, detail
        if req.action in (IamAction.GRANT_EXCEPTION, IamAction.END_EXCEPTION):
            want = req.action is IamAction.GRANT_EXCEPTION
            detail = {"keycloak_user_id": uid, "group_id": self.group_id, "member": want}
            if self._in_group(uid) == want:
                return IamStatus.ALREADY_APPLIED, detail
            self.http.call("PUT" if want else "DELETE", f"{self._admin}/users/{_q(uid)}/groups/{_q(self.group_id)}",
                           ok=(204,))
            return IamStatus.APPLIED, detail
        raise VendorRefused(f"Keycloak adapter does not execute {req.action.value}", status=0)
