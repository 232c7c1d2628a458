"""The SOC dashboard at ``/ui``: server-rendered pages over the service layer, live updates by server-sent
events, sign-in with the principals' tokens, and a strict Content-Security-Policy (scripts and styles
only from ``/ui/static``; the vendored htmx carries its licence beside it)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from integrations.ui import decisions, feed, govern, signin
from integrations.ui.auth import load_secret
from integrations.ui.views import HERE, SecurityHeaders, install_handlers


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app`` (its routes stay out of the OpenAPI document)."""
    app.state.ui_secret = load_secret(app.state.runtime.settings.home)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    for module in (signin, feed, decisions, govern):
        app.include_router(module.router)
    app.add_api_route("/ui/", lambda: RedirectResponse("/ui", status_code=307), include_in_schema=False)
    install_handlers(app)
    app.add_middleware(SecurityHeaders)
