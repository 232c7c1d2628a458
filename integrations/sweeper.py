"""The service's recovery loop over :func:`integrations.services.proposals.sweep_approved`: once at start-up,
then every ``interval`` seconds (an execution that failed to run after its approval, say because the database
was briefly away, is picked up without a restart). The sweep re-derives each proposal's eligibility from its
approvals, so a status row alone never gets anything executed."""

from __future__ import annotations

import logging

from integrations.periodic import Periodic
from integrations.services.deps import ServiceDeps
from integrations.services.proposals import sweep_approved

log = logging.getLogger("glassgate.sweeper")

SWEEP_SECONDS = 30.0  # how often the service looks for approved proposals left without an execution


class ApprovedSweeper(Periodic):
    name = "glassgate-approved-sweep"

    def __init__(self, deps: ServiceDeps, *, interval: float = SWEEP_SECONDS):
        super().__init__(interval=interval)
        self._deps = deps
        self.recovered: list[str] = []

    def run_once(self) -> list[str]:
        try:
            got = sweep_approved(deps=self._deps)
        except Exception:  # noqa: BLE001 - e.g. the database is down; the next run tries again
            log.exception("sweep of approved proposals failed")
            return []
        self.recovered.extend(got)
        return got
