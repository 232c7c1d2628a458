"""The FastAPI application over one Runtime: the HTTP API, the ticket webhooks, Slack when configured,
and the background work of the service (the enrichment job worker, the sweep that executes approvals a crash
cut off, and the periodic audit checkpoint)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from integrations import faults
from integrations.api import errors, metrics
from integrations.api.routes import agent, audit, decisions, events, health, policies, proposals, tickets
from integrations.enrichment import start_enrichment_worker
from integrations.iam import expiry as iam_expiry
from integrations.principals import ConfigError, load_principals
from integrations.runtime import Runtime
from integrations.services.decisions import GroupCommit
from integrations.services.deps import ServiceDeps
from integrations.sweeper import ApprovedSweeper
from integrations.ui import install as install_ui
from integrations.witness import Checkpointer

log = logging.getLogger("glassgate.app")


def create_app(runtime: Runtime, *, start_worker: bool = True) -> FastAPI:
    """Build the service. Principals and their token hashes are read from the configuration file now
    (GLASSGATE_CONFIG through the runtime's settings); a bad file fails here, not on the first request, and
    so does a channel switched on with an empty or placeholder secret.

    With ``start_worker`` (the default) the app's lifespan runs the approval sweep, the enrichment job worker
    and the audit checkpoint; without it, nothing runs in the background (tests use that to stage a crash).
    """
    problems = runtime.settings.channel_problems()
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems))
    if runtime.settings.now is not None:
        log.warning("GLASSGATE_NOW fixes the clock at %s (allowed by GLASSGATE_ALLOW_FIXED_CLOCK): proposals "
                    "will not expire and decisions carry that time; never do this in production",
                    runtime.settings.now.isoformat())
    app = FastAPI(title="glassgate", version="0.1.0", openapi_url="/openapi.json", lifespan=_lifespan(start_worker),
                  description="Explainable Zero Trust access decisions. Errors are RFC 9457 problem documents.")
    app.state.runtime = runtime
    app.state.principal_entries = load_principals(runtime.settings.principals_path)
    app.state.tool_context = runtime.tool_context(with_index=False, with_model=False)
    app.state.write_lock = threading.Lock()
    app.state.services = ServiceDeps.from_runtime(runtime, write_lock=app.state.write_lock)
    app.state.group_commit = GroupCommit(app.state.write_lock)
    app.state.checkpointer = None
    errors.install(app)
    metrics.install(app)
    iam_expiry.install(app)
    tickets.install(app)
    for module in (health, metrics, events, decisions, agent, proposals, policies, audit, tickets):
        app.include_router(module.router)
    from integrations.api.routes import ingest  # vendor sign-in logs, scored in shadow (i11)

    app.include_router(ingest.router)
    install_ui(app)  # the dashboard at /ui
    if runtime.settings.slack_enabled:
        from integrations.api.routes import slack  # slack-bolt is imported only when Slack is switched on

        slack.install(app)
    return app


def _lifespan(start_worker: bool):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not start_worker:
            yield
            return
        rt: Runtime = app.state.runtime
        faults.warn_if_armed(faults.parse(rt.settings.failpoints))
        sweeper = ApprovedSweeper(app.state.services)
        await run_in_threadpool(sweeper.run_once)  # approvals whose execution a crash cut off, before serving
        sweeper.start()
        expiries = iam_expiry.ExpirySweeper(rt, write_lock=app.state.write_lock)
        await run_in_threadpool(expiries.run_once)  # exceptions that ended while the service was down
        expiries.start()
        worker, close = start_enrichment_worker(rt, write_lock=app.state.write_lock)
        app.state.job_worker = worker
        checkpointer = app.state.checkpointer = Checkpointer(rt, interval=rt.settings.checkpoint_seconds)
        checkpointer.start()
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop)  # finishes the job in hand first
            close()
            app.state.job_worker = None
            await run_in_threadpool(sweeper.stop)
            await run_in_threadpool(expiries.stop)
            await run_in_threadpool(checkpointer.stop)  # covers what the last requests appended
    return lifespan
