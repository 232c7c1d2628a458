"""A small Keycloak on 127.0.0.1 for the Keycloak adapter's tests, after the admin REST reference: the
client credentials token endpoint (``POST /realms/{realm}/protocol/openid-connect/token``, form-encoded),
user search (``GET /admin/realms/{realm}/users?username=&exact=true``), a user's groups (paged with
``first``/``max``) and sessions, group membership (``PUT``/``DELETE .../users/{id}/groups/{groupId}``, 204) and
logout (``POST .../users/{id}/logout``, 204). Admin calls must carry the bearer token the endpoint issued.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qs

from tests.fake_vendor import Answer, FakeVendor


class FakeKeycloak(FakeVendor):
    def __init__(self, *, realm: str, client_id: str, client_secret: str):
        super().__init__()
        self.realm, self.client_id, self.client_secret = realm, client_id, client_secret
        self.tokens: set[str] = set()
        self.users: dict[str, str] = {}  # id -> username
        self.groups: dict[str, set[str]] = {}  # group id -> user ids
        self.sessions: dict[str, dict[str, Any]] = {}  # session id -> {userId, start}
        base = rf"^/admin/realms/{re.escape(realm)}"
        self._users = re.compile(base + r"/users$")
        self._user_groups = re.compile(base + r"/users/([^/]+)/groups$")
        self._member = re.compile(base + r"/users/([^/]+)/groups/([^/]+)$")
        self._sessions = re.compile(base + r"/users/([^/]+)/sessions$")
        self._logout = re.compile(base + r"/users/([^/]+)/logout$")
        self.token_path = f"/realms/{realm}/protocol/openid-connect/token"

    def authorized(self, headers: dict[str, str], path: str) -> bool:
        if path == self.token_path:
            return True  # the client authenticates in the form body
        auth = headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.tokens

    def error(self, status: int, message: str) -> Answer:
        return status, {"errorMessage": message}, {}

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: Any) -> Answer:
        if path == self.token_path and method == "POST":
            self.check(headers.get("content-type") == "application/x-www-form-urlencoded",
                       f"token: Content-Type is {headers.get('content-type')!r}")
            form = {k: v[0] for k, v in parse_qs(body if isinstance(body, str) else "").items()}
            if form != {"grant_type": "client_credentials", "client_id": self.client_id,
                        "client_secret": self.client_secret}:
                return 401, {"error": "unauthorized_client", "error_description": "Invalid client credentials"}, {}
            token = secrets.token_urlsafe(16)
            self.tokens.add(token)
            return 200, {"access_token": token, "expires_in": 300, "token_type": "Bearer", "scope": "profile"}, {}
        if method == "GET" and self._users.match(path):
            self.check(query.get("exact") == ["true"], f"GET {path}: exact is {query.get('exact')}")
            name = query.get("username", [""])[0]
            return 200, [{"id": i, "username": u, "enabled": True} for i, u in self.users.items() if u == name], {}
        if method == "GET" and (m := self._user_groups.match(path)):
            first, size = int(query.get("first", ["0"])[0]), int(query.get("max", ["100"])[0])
            mine = sorted(g for g, members in self.groups.items() if m.group(1) in members)
            return 200, [{"id": g, "name": g, "path": "/" + g} for g in mine[first:first + size]], {}
        if method in ("PUT", "DELETE") and (m := self._member.match(path)):
            uid, gid = m.groups()
            if uid not in self.users or gid not in self.groups:
                return self.error(404, "Could not find user or group")
            (self.groups[gid].add if method == "PUT" else self.groups[gid].discard)(uid)
            return 204, None, {}
        if method == "GET" and (m := self._sessions.match(path)):
            uid = m.group(1)
            return 200, [{"id": sid, "userId": uid, "username": self.users.get(uid), "start": x["start"],
                          "lastAccess": x["start"], "clients": {}} for sid, x in self.sessions.items()
                         if x["userId"] == uid], {}
        if method == "POST" and (m := self._logout.match(path)):
            uid = m.group(1)
            if uid not in self.users:
                return self.error(404, "User not found")
            self.sessions = {s: x for s, x in self.sessions.items() if x["userId"] != uid}
            return 204, None, {}
        self.problems.append(f"{method} {path}: not an endpoint of this fake")
        return self.error(404, "Not found")
