"""The FastAPI application over one Runtime."""

from __future__ import annotations

import threading

from fastapi import FastAPI

from integrations.api import errors
from integrations.api.routes import decisions, events, health
from integrations.principals import DEMO_CONFIG, ConfigError, load_principals
from integrations.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    """Build the HTTP API. Principals and their token hashes are read from the configuration file now
    (GLASSGATE_CONFIG through the runtime's settings); a bad file fails here, not on the first request, and
    so does a channel switched on with an empty or placeholder secret."""
    problems = runtime.settings.channel_problems()
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems))
    app = FastAPI(title="glassgate", version="0.1.0", openapi_url="/openapi.json",
                  description="Explainable Zero Trust access decisions. Errors are RFC 9457 problem documents.")
    app.state.runtime = runtime
    app.state.principal_entries = load_principals(runtime.settings.config or DEMO_CONFIG)
    app.state.tool_context = runtime.tool_context(with_index=False, with_model=False)
    app.state.write_lock = threading.Lock()
    errors.install(app)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(decisions.router)
    # -- agent, proposals, policies, audit
    # -- ticket webhooks and enrichment
    # -- slack
    return app
