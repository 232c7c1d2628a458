"""The service's periodic removal of exceptions whose window ended (in the vendor IAM that granted them),
and the ``/metrics`` gauges that show when such removals are overdue."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from fastapi import FastAPI
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from agent.iam_expiry import ExpiryOutcome, overdue_count
from integrations.periodic import Periodic
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.iam_expiry import run_expiries
from risk.store.control import IamExpiryRow

log = logging.getLogger("glassgate.iam.expiry")


class ExpirySweeper(Periodic):
    """:func:`integrations.services.iam_expiry.run_expiries` at start-up and every GLASSGATE_IAM_EXPIRY_SECONDS,
    under the app's write lock."""

    name = "glassgate-iam-expiry"

    def __init__(self, rt: Runtime, *, write_lock: AbstractContextManager[Any] | None = None):
        super().__init__(interval=rt.settings.iam_expiry_seconds)
        self._deps = ServiceDeps.from_runtime(rt)
        self._lock: Callable[[], AbstractContextManager[Any]] = (lambda: write_lock) if write_lock is not None \
            else nullcontext

    def run_once(self) -> list[ExpiryOutcome]:
        try:
            with self._lock():
                got = run_expiries(deps=self._deps)
        except Exception:  # noqa: BLE001 - e.g. the database is down; the next run tries again
            log.exception("removal of expired exceptions failed")
            return []
        for o in got:
            log.warning("exception of %s ended: removal %s%s", o.proposal_id, o.status.value,
                        f" (next attempt {o.retry_at:%Y-%m-%dT%H:%M:%SZ})" if o.retry_at else "")
        return got


class _ExpiryCollector(Collector):
    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rt: Runtime = self.app.state.runtime
        overdue = GaugeMetricFamily("glassgate_iam_expiries_overdue", "Exceptions past their end that the vendor "
                                    "IAM has not removed yet (retried; alert when it stays above 0).")
        by_status = GaugeMetricFamily("glassgate_iam_expiries", "Vendor IAM exception removals, by status.",
                                      labels=["status"])
        try:
            with rt.sessions() as s:
                overdue.add_metric([], overdue_count(s, now=rt.clock()))
                for status, n in s.execute(select(IamExpiryRow.status, func.count()).group_by(IamExpiryRow.status)):
                    by_status.add_metric([status], n)
        except Exception:  # noqa: BLE001 - the database being down must not break the scrape
            return
        yield overdue
        yield by_status


def install(app: FastAPI) -> None:
    """Register the expiry gauges on the app's metrics registry (after ``metrics.install``)."""
    app.state.metrics_registry.register(_ExpiryCollector(app))
