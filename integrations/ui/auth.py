"""Dashboard sign-in: a principal's bearer token exchanged for a signed session cookie, and CSRF tokens.

The cookie holds the principal's id, the first 16 hex digits of its token's SHA-256, a random nonce and
an expiry, signed (HMAC-SHA256) with a per-home secret (``GLASSGATE_HOME/ui-secret``, created 0600). Every
request looks the principal up again in the principals file: removing a principal or rotating its token
ends its sessions. The CSRF token of a session is an HMAC of its nonce (a synchronizer token: forms carry
it, and a POST without it, or with another session's, is refused). The sign-in form has its own token,
bound to a random pre-session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from agent.approval import Principal, Role
from integrations.api.deps import READERS

SESSION_COOKIE = "gg_session"
LOGIN_COOKIE = "gg_login"
SESSION_SECONDS = 8 * 3600
SECRET_FILE = "ui-secret"


class NeedsSignIn(Exception):
    """No valid session: pages redirect to the sign-in form, fragments and streams answer 401."""


class Refused(Exception):
    """A signed-in principal may not do this (or the form's CSRF token is wrong); shown as a 403 page."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class UiUser:
    principal: Principal
    csrf: str

    def has(self, *roles: Role) -> bool:
        return bool(self.principal.roles & set(roles))


def load_secret(home: Path) -> bytes:
    """The home's session-signing secret, created (32 random bytes, mode 0600) on first use."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / SECRET_FILE
    if not path.exists():
        # written whole under a temporary name, then linked into place: two processes starting on one home
        # agree on one secret, and neither ever reads a half-written file
        tmp = home / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: use its secret
        finally:
            tmp.unlink()
    data = path.read_bytes()
    if len(data) < 32:
        raise ValueError(f"{path}: the dashboard secret is shorter than 32 bytes; delete it to make a new one")
    return data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def session_cookie(secret: bytes, *, principal_id: str, token_sha256: str, now: float) -> str:
    body = _b64(json.dumps({"p": principal_id, "t": token_sha256[:16], "n": secrets.token_urlsafe(16),
                            "e": int(now) + SESSION_SECONDS}).encode())
    return f"{body}.{_mac(secret, 'session', body)}"


def read_session(secret: bytes, cookie: str | None, *, now: float) -> dict[str, Any] | None:
    """The cookie's payload if its signature holds and it has not expired, else None."""
    if not cookie or "." not in cookie:
        return None
    body, _, sig = cookie.rpartition(".")
    if not hmac.compare_digest(sig, _mac(secret, "session", body)):
        return None
    try:
        data = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("e"), int) or data["e"] <= now:
        return None
    return data


def login_token(secret: bytes, nonce: str) -> str:
    return _mac(secret, "login", nonce)


def check_login_token(secret: bytes, nonce: str | None, token: str | None) -> bool:
    return bool(nonce and token) and hmac.compare_digest(str(token), login_token(secret, str(nonce)))


def _secret(request: Request) -> bytes:
    secret: bytes = request.app.state.ui_secret
    return secret


def current_user(request: Request) -> UiUser:
    """The signed-in principal with a reading role; :class:`NeedsSignIn` otherwise."""
    rt = request.app.state.runtime
    data = read_session(_secret(request), request.cookies.get(SESSION_COOKIE), now=rt.clock().timestamp())
    if data is None:
        raise NeedsSignIn()
    entry = request.app.state.principal_entries.get(data.get("p"))
    if entry is None or entry.token_sha256 is None or not hmac.compare_digest(entry.token_sha256[:16], str(data["t"])):
        raise NeedsSignIn()  # removed, or its token rotated since sign-in
    principal = Principal(id=entry.id, roles=frozenset(entry.roles))
    if not principal.roles & READERS:
        raise Refused(f"{principal.id} has no role that may read the dashboard")
    return UiUser(principal=principal, csrf=_mac(_secret(request), "csrf", str(data["n"])))


User = Annotated[UiUser, Depends(current_user)]


def check_csrf(user: UiUser, token: str | None) -> None:
    """Refuse a form whose synchronizer token is missing or not this session's."""
    if not token or not hmac.compare_digest(str(token), user.csrf):
        raise Refused("the form's CSRF token is missing or does not belong to this session; reload the page "
                      "and submit it again")


def cookie_flags(request: Request) -> dict[str, Any]:
    """HttpOnly, SameSite=Strict, and Secure when the dashboard is served over TLS."""
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/ui"}
