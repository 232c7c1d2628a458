"""Sign-in and sign-out pages: a principal's bearer token for a session cookie."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from integrations.api.deps import READERS
from integrations.principals import principal_for_token
from integrations.ui.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    User,
    check_csrf,
    check_login_token,
    cookie_flags,
    login_token,
    session_cookie,
)
from integrations.ui.views import render

router = APIRouter(prefix="/ui", include_in_schema=False)


def _form(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    resp = render(request, "login.html", status=status, csrf=login_token(request.app.state.ui_secret, nonce),
                  error=error)
    resp.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, **cookie_flags(request))
    return resp


@router.get("/login")
def login_form(request: Request) -> Response:
    return _form(request)


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=512)] = "",
          csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    """Exchange a bearer token for a session; the token itself is never stored in the cookie."""
    if not check_login_token(request.app.state.ui_secret, request.cookies.get(LOGIN_COOKIE), csrf):
        return _form(request, error="The sign-in form expired or was not sent by this page; try again.", status=403)
    entry = principal_for_token(request.app.state.principal_entries.values(), token.strip()) if token.strip() else None
    if entry is None or entry.token_sha256 is None:
        return _form(request, error="That token is not valid.", status=401)
    if not set(entry.roles) & READERS:
        return _form(request, error=f"{entry.id} is an ingest service: it has no view in the dashboard.", status=403)
    resp = RedirectResponse("/ui", status_code=303)
    now = request.app.state.runtime.clock().timestamp()
    resp.set_cookie(SESSION_COOKIE, session_cookie(request.app.state.ui_secret, principal_id=entry.id,
                                                   token_sha256=entry.token_sha256, now=now),
                    max_age=SESSION_SECONDS, **cookie_flags(request))
    resp.delete_cookie(LOGIN_COOKIE, path="/ui")
    return resp


@router.post("/logout")
def logout(request: Request, user: User, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    check_csrf(user, csrf)
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/ui")
    return resp
