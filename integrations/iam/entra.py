"""Microsoft Entra adapter over Microsoft Graph v1.0 (application permissions; client credentials via msal,
with a client secret or a certificate).

- revoke_session: the user's ``signInSessionsValidFromDateTime`` is read first (already at or after the
  approval: done), then ``POST /users/{id}/revokeSignInSessions``. Graph's reference says 204 No Content, the
  service answers 200 with ``{"value": true}``: both are accepted.
- grant_exception / end_exception: membership of the group the Conditional Access policy excludes; the user's
  direct groups (``GET /users/{id}/memberOf/microsoft.graph.group``, paged by ``@odata.nextLink``) are read
  first, then ``POST /groups/{gid}/members/$ref`` with ``@odata.id`` / ``DELETE /groups/{gid}/members/{id}/$ref``.
- confirm_denial in mode ``confirm_compromised`` / confirm_benign in mode ``dismiss``: the risky user's
  ``riskState`` is read first (``GET /identityProtection/riskyUsers/{id}``), then
  ``POST /identityProtection/riskyUsers/confirmCompromised`` or ``.../dismiss`` with ``{"userIds": [id]}``.

msal only accepts https authorities, so the token source is a small callable (:func:`msal_token_source`)
handed to the adapter; the tests give msal an HTTP client that carries its requests to a loopback server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from agent.iam_types import ActionMode, Capabilities, IamAction, IamRequest, IamResult, IamStatus
from integrations.iam.http import TokenAuth, VendorBusy, VendorHttp, VendorRefused
from integrations.settings import Settings

MAX_PAGES = 20
RISK_STATE = {ActionMode.CONFIRM_COMPROMISED: ("confirmCompromised", "confirmedCompromised"),
              ActionMode.DISMISS: ("dismiss", "dismissed")}


def _q(v: str) -> str:
    return quote(v, safe="")


def msal_token_source(settings: Settings, *, http_client: Any = None) -> Callable[[], tuple[str, float]]:
    """Tokens for Graph from msal's client credentials flow (secret or certificate). The msal application is
    built on first use (building it runs the authority's discovery, a network call)."""
    import msal

    app: list[Any] = []

    def fetch() -> tuple[str, float]:
        if not app:
            cred: Any = settings.entra_client_secret
            if settings.entra_certificate_path is not None:
                cred = {"private_key": settings.entra_certificate_path.read_text(),
                        "thumbprint": settings.entra_certificate_thumbprint}
            try:
                app.append(msal.ConfidentialClientApplication(
                    settings.entra_client_id, client_credential=cred, http_client=http_client, timeout=10,
                    instance_discovery=False,  # no call to the alias discovery service: the authority is given
                    authority=f"{settings.entra_authority_host.rstrip('/')}/{settings.entra_tenant_id}"))
            except ValueError as exc:  # the authority's discovery failed (unknown tenant, unreachable)
                raise VendorBusy(f"Entra authority: {exc}") from None
        try:
            got = app[0].acquire_token_for_client(scopes=[f"{settings.entra_graph_url.rstrip('/')}/.default"])
        except Exception as exc:  # noqa: BLE001 - msal's transport errors (requests or the given client)
            raise VendorBusy(f"Entra token: {type(exc).__name__}") from None
        if "access_token" not in got:
            if got.get("error") in ("invalid_client", "unauthorized_client", "invalid_request", "invalid_scope"):
                raise VendorRefused(f"Entra refused the client credentials: {got.get('error')}: "
                                    f"{str(got.get('error_description'))[:200]}", status=401)
            raise VendorBusy(f"Entra token: {got.get('error')}")
        return str(got["access_token"]), float(got.get("expires_in", 300))

    return fetch


class EntraIam:
    name = "entra"

    def __init__(self, *, graph_url: str, tokens: Callable[[], tuple[str, float]], exception_group_id: str,
                 capabilities: Capabilities, **http_options: Any):
        self.capabilities, self.group_id = capabilities, exception_group_id
        self.graph = graph_url.rstrip("/")
        self.http = VendorHttp(vendor="Graph", base_url=self.graph, auth=TokenAuth(tokens), **http_options)

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

    def _user(self, ref: str | None) -> dict[str, Any]:
        if not ref:
            raise VendorRefused("Graph: the request names no user", status=0)
        r = self.http.call("GET", f"/v1.0/users/{_q(ref)}", ok=(200,),
                           params={"$select": "id,userPrincipalName,signInSessionsValidFromDateTime"})
        user: dict[str, Any] = r.json()
        return user

    def _in_group(self, uid: str) -> bool:
        url: str | None = f"/v1.0/users/{_q(uid)}/memberOf/microsoft.graph.group?$select=id&$top=999"
        for _ in range(MAX_PAGES):
            if url is None:
                break
            page = self.http.call("GET", url, ok=(200,)).json()
            if any(g.get("id") == self.group_id for g in page.get("value", [])):
                return True
            url = page.get("@odata.nextLink")
        return False

    def _run(self, req: IamRequest) -> tuple[IamStatus, dict[str, Any]]:
        mode = self.capabilities.mode(req.action)
        user = self._user(req.user_id)
        uid = str(user["id"])
        if req.action is IamAction.REVOKE_SESSION:
            since = user.get("signInSessionsValidFromDateTime")
            detail: dict[str, Any] = {"entra_user_id": uid}
            if since and req.window_start and datetime.fromisoformat(since.replace("Z", "+00:00")) >= req.window_start:
                return IamStatus.ALREADY_APPLIED, {**detail, "sessions_valid_from": since}
            r = self.http.call("POST", f"/v1.0/users/{_q(uid)}/revokeSignInSessions", ok=(200, 204))
            if r.status_code == 200 and r.json().get("value") is not True:
                raise VendorBusy("Graph revokeSignInSessions answered 200 without value: true")
            return IamStatus.APPLIED, detail
        if req.action in (IamAction.GRANT_EXCEPTION, IamAction.END_EXCEPTION):
            want = req.action is IamAction.GRANT_EXCEPTION
            detail = {"entra_user_id": uid, "group_id": self.group_id, "member": want}
            if self._in_group(uid) == want:
                return IamStatus.ALREADY_APPLIED, detail
            if want:
                self.http.call("POST", f"/v1.0/groups/{_q(self.group_id)}/members/$ref", ok=(204,),
                               json={"@odata.id": f"{self.graph}/v1.0/directoryObjects/{uid}"})
            else:
                self.http.call("DELETE", f"/v1.0/groups/{_q(self.group_id)}/members/{_q(uid)}/$ref", ok=(204,))
            return IamStatus.APPLIED, detail
        if mode in RISK_STATE and req.action in (IamAction.CONFIRM_DENIAL, IamAction.CONFIRM_BENIGN):
            verb, state = RISK_STATE[mode]
            r = self.http.call("GET", f"/v1.0/identityProtection/riskyUsers/{_q(uid)}", ok=(200, 404))
            detail = {"entra_user_id": uid, "risk_state": state}
            if r.status_code == 200 and r.json().get("riskState") == state:
                return IamStatus.ALREADY_APPLIED, detail
            self.http.call("POST", f"/v1.0/identityProtection/riskyUsers/{verb}", ok=(204,), json={"userIds": [uid]})
            return IamStatus.APPLIED, detail
        raise VendorRefused(f"Entra adapter does not execute {req.action.value} in mode {mode.value}", status=0)
