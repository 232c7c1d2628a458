"""What every dashboard page shares: the templates, the service dependencies of the app, the security
headers, and the HTML answers to a missing session or a refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integrations.services.deps import ServiceDeps
from integrations.ui import charts
from integrations.ui.auth import NeedsSignIn, Refused, UiUser

HERE = Path(__file__).parent
OUTCOME_WORD = {"allow": "allow", "step_up": "step-up", "deny": "deny"}
OUTCOME_MARK = {"allow": "✓", "step_up": "▲", "deny": "✕"}  # a shape as well as a colour

# No inline script or style anywhere: scripts and styles come from /ui/static only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY", "cache-control": "no-store"}

env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
env.globals.update(outcome_word=OUTCOME_WORD, outcome_mark=OUTCOME_MARK, charts=charts)
env.filters["pct"] = lambda v: f"{v * 100:.0f}%" if v is not None else "—"
env.filters["pts"] = lambda v: f"{v:+.2f}"
env.filters["r2"] = lambda v: f"{v:.2f}"


def render(request: Request, name: str, status: int = 200, user: UiUser | None = None, **ctx: Any) -> HTMLResponse:
    html = env.get_template(name).render(request=request, user=user, path=request.url.path, **ctx)
    return HTMLResponse(html, status_code=status)


def deps(request: Request) -> ServiceDeps:
    """The app's service dependencies (the same object every HTTP route uses, with the app's write lock)."""
    got: ServiceDeps = request.app.state.services
    return got


class SecurityHeaders:
    """Adds the CSP and its companions to every response under /ui (pages, fragments, the stream, files)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/ui"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                static = str(scope.get("path", "")).startswith("/ui/static/")
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                            if not (static and k == "cache-control")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(NeedsSignIn)
    async def _sign_in(request: Request, exc: NeedsSignIn) -> Response:
        if request.headers.get("hx-request") or request.url.path.endswith("/stream"):
            return HTMLResponse("<p>Your session has ended; sign in again.</p>", status_code=401)
        return RedirectResponse("/ui/login", status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return render(request, "refused.html", status=403, message=exc.message)
