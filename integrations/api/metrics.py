"""Prometheus metrics: request counts and latencies (by route template, never raw paths), and on each
scrape the counts of decisions by outcome, proposals by status, jobs by status and webhook deliveries
by result. Each app has its own registry, so two apps in one process (tests) never share counters.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from integrations.api.deps import Reader
from integrations.api.errors import problem_responses
from risk.store.control import ProposalRow
from risk.store.schema import DecisionRow
from risk.store.service import JobRow

router = APIRouter(tags=["health"])

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StoreCollector(Collector):
    """Counts read from the database at scrape time (they survive restarts and span processes)."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rt = self.app.state.runtime
        for name, doc, label, col in (
                ("glassgate_decisions", "Decisions stored, by outcome.", "outcome", DecisionRow.outcome),
                ("glassgate_proposals", "Proposals, by status.", "status", ProposalRow.status),
                ("glassgate_jobs", "Background jobs (ticket enrichment), by status.", "status", JobRow.status)):
            fam = GaugeMetricFamily(name, doc, labels=[label])
            try:
                with rt.sessions() as s:
                    rows = s.execute(select(col, func.count()).group_by(col)).all()
            except Exception:  # noqa: BLE001 - the database being down must not break the scrape
                rows = []
            for value, n in rows:
                fam.add_metric([str(value)], n)
            yield fam
        cp = getattr(self.app.state, "checkpointer", None)
        report = cp.last_report if cp is not None else None
        if report is not None:
            yield GaugeMetricFamily("glassgate_audit_verified", "1 when the last audit checkpoint verified the "
                                    "whole ledger, 0 when it found tampering.", value=1 if report.ok else 0)
            yield GaugeMetricFamily("glassgate_audit_checkpointed_entries", "Ledger size at the last checkpoint.",
                                    value=report.size)
        fam = GaugeMetricFamily("glassgate_webhook_deliveries", "Ticket webhook deliveries since start, by result.",
                                labels=["result"])
        results: Counter[str] = getattr(self.app.state, "webhook_results", None) or Counter()
        for result, n in sorted(results.items()):
            fam.add_metric([result], n)
        yield fam
        from integrations.llm_fallbacks import snapshot  # i15: LLM answers replaced by the deterministic path

        fam = GaugeMetricFamily("glassgate_llm_fallbacks", "LLM plans and drafts not used since start, by stage "
                                "and reason.", labels=["stage", "reason"])
        for (stage, reason), n in sorted(snapshot().items()):
            fam.add_metric([stage, reason], n)
        yield fam


def install(app: FastAPI) -> None:
    """Add the request middleware and the per-app registry; `GET /metrics` is in ``router``."""
    registry = CollectorRegistry(auto_describe=True)
    requests = PromCounter("glassgate_http_requests", "HTTP requests, by method, route and status.",
                           ["method", "route", "status"], registry=registry)
    latency = Histogram("glassgate_http_request_duration_seconds", "HTTP request latency, by method and route.",
                        ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
    registry.register(_StoreCollector(app))
    app.state.metrics_registry = registry

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route: Any = request.scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            requests.labels(request.method, template, str(status)).inc()
            latency.labels(request.method, template).observe(time.perf_counter() - start)


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition format."},
    **problem_responses(401, 403)})
def metrics(request: Request, principal: Reader) -> Response:
    """Prometheus metrics (scrape with a bearer token of an analyst, policy owner or admin)."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
