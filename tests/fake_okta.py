"""A small Okta org on 127.0.0.1 for the Okta adapter's tests, after the Management API reference: users
(``GET /api/v1/users/{id|login}``), their groups (``GET /api/v1/users/{id}/groups``, paged with ``Link``),
group membership (``PUT``/``DELETE /api/v1/groups/{groupId}/users/{userId}``, 204), sessions
(``GET /api/v1/sessions/{id}``; ``DELETE /api/v1/users/{id}/sessions?oauthTokens=true``, 204) and suspension
(``POST /api/v1/users/{id}/lifecycle/suspend``, 200; 400 unless ACTIVE). Every request must carry
``Authorization: SSWS <token>`` (or a Bearer token from ``POST /oauth2/v1/token``, client credentials with a
private key JWT checked against the service app's public key) and ``Accept: application/json``; errors are
Okta's error objects.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qs

import jwt

from tests.fake_vendor import Answer, FakeVendor

USER = re.compile(r"^/api/v1/users/([^/]+)$")
USER_GROUPS = re.compile(r"^/api/v1/users/([^/]+)/groups$")
USER_SESSIONS = re.compile(r"^/api/v1/users/([^/]+)/sessions$")
SUSPEND = re.compile(r"^/api/v1/users/([^/]+)/lifecycle/suspend$")
MEMBER = re.compile(r"^/api/v1/groups/([^/]+)/users/([^/]+)$")
SESSION = re.compile(r"^/api/v1/sessions/([^/]+)$")
PAGE = 2  # groups per page: small, so paging is exercised


class FakeOkta(FakeVendor):
    def __init__(self, *, token: str, client_id: str | None = None, public_key_pem: str | None = None):
        super().__init__()
        self.token = token
        self.client_id, self.public_key_pem = client_id, public_key_pem  # an OAuth service app, when given
        self.bearer: set[str] = set()
        self.users: dict[str, dict[str, Any]] = {}  # id -> user
        self.groups: dict[str, set[str]] = {}  # group id -> user ids
        self.sessions: dict[str, str] = {}  # session id -> user id

    def add_user(self, login: str, *, uid: str, status: str = "ACTIVE") -> None:
        self.users[uid] = {"id": uid, "status": status, "profile": {"login": login}}

    def authorized(self, headers: dict[str, str], path: str) -> bool:
        self.check(headers.get("accept") == "application/json", f"{path}: Accept is {headers.get('accept')!r}")
        if path == "/oauth2/v1/token":
            return True  # the client authenticates with its signed assertion
        auth = headers.get("authorization", "")
        return auth == f"SSWS {self.token}" or (auth.startswith("Bearer ") and auth[7:] in self.bearer)

    def _token(self, body: Any) -> Answer:
        form = {k: v[0] for k, v in parse_qs(body if isinstance(body, str) else "").items()}
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" or not self.public_key_pem:
            return 400, {"error": "invalid_request", "error_description": "client credentials with a JWT"}, {}
        try:
            claims = jwt.decode(form.get("client_assertion", ""), self.public_key_pem, algorithms=["RS256"],
                                audience=f"{self.url}/oauth2/v1/token", options={"require": ["exp", "iat", "jti"]})
        except jwt.PyJWTError as exc:
            return 401, {"error": "invalid_client", "error_description": f"The client_assertion is invalid: {exc}"}, {}
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return 401, {"error": "invalid_client", "error_description": "iss and sub must be the client id"}, {}
        self.check(set(form.get("scope", "").split()) == {"okta.users.manage", "okta.groups.manage",
                                                           "okta.sessions.read"}, f"token: scope {form.get('scope')}")
        tok = secrets.token_urlsafe(16)
        self.bearer.add(tok)
        return 200, {"token_type": "Bearer", "expires_in": 3600, "access_token": tok, "scope": form.get("scope")}, {}

    def error(self, status: int, message: str) -> Answer:
        code = {404: "E0000007", 400: "E0000001", 405: "E0000022"}.get(status, "E0000009")
        return status, {"errorCode": code, "errorSummary": message, "errorLink": code, "errorId": "oae-test",
                        "errorCauses": []}, {}

    def _find(self, ref: str) -> dict[str, Any] | None:
        return self.users.get(ref) or next((u for u in self.users.values() if u["profile"]["login"] == ref), None)

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: Any) -> Answer:
        if method == "POST" and path == "/oauth2/v1/token":
            return self._token(body)
        if method == "GET" and (m := USER.match(path)):
            u = self._find(m.group(1))
            return (200, u, {}) if u else self.error(404, f"Not found: Resource not found: {m.group(1)} (User)")
        if method == "GET" and (m := USER_GROUPS.match(path)):
            uid = m.group(1)
            if uid not in self.users:
                return self.error(404, "Not found: Resource not found (User)")
            mine = sorted(g for g, members in self.groups.items() if uid in members)
            after = query.get("after", [""])[0]
            start = mine.index(after) + 1 if after in mine else 0
            page = mine[start:start + PAGE]
            extra = {}
            if start + PAGE < len(mine):
                extra["Link"] = f'<{self.url}/api/v1/users/{uid}/groups?after={page[-1]}&limit=200>; rel="next"'
            return 200, [{"id": g, "type": "OKTA_GROUP", "profile": {"name": g}} for g in page], extra
        if method in ("PUT", "DELETE") and (m := MEMBER.match(path)):
            gid, uid = m.groups()
            if gid not in self.groups or uid not in self.users:
                return self.error(404, "Not found: Resource not found (UserGroup)")
            self.check(body is None, f"{method} {path}: a membership call has no body")
            (self.groups[gid].add if method == "PUT" else self.groups[gid].discard)(uid)
            return 204, None, {}
        if method == "GET" and (m := SESSION.match(path)):
            sid = m.group(1)
            if sid not in self.sessions:
                return self.error(404, "Not found: Resource not found (Session)")
            return 200, {"id": sid, "userId": self.sessions[sid], "status": "ACTIVE"}, {}
        if method == "DELETE" and (m := USER_SESSIONS.match(path)):
            uid = m.group(1)
            self.check(query.get("oauthTokens") == ["true"], f"DELETE {path}: oauthTokens is {query.get('oauthTokens')}")
            if uid not in self.users:
                return self.error(404, "Not found: Resource not found (User)")
            self.sessions = {s: u for s, u in self.sessions.items() if u != uid}
            return 204, None, {}
        if method == "POST" and (m := SUSPEND.match(path)):
            u = self.users.get(m.group(1))
            if u is None:
                return self.error(404, "Not found: Resource not found (User)")
            if u["status"] != "ACTIVE":
                return self.error(400, "Api validation failed: Cannot suspend a user that is not active")
            u["status"] = "SUSPENDED"
            return 200, {}, {}
        self.problems.append(f"{method} {path}: not an endpoint of this fake")
        return self.error(404, f"Not found: {path}")
