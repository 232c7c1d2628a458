"""Use case: remove, in the vendor IAM that granted them, the exceptions whose window has ended."""

from __future__ import annotations

import logging

from agent.iam_expiry import ExpiryOutcome, due_expiries, run_due_expiries
from integrations.services.deps import ServiceDeps

log = logging.getLogger("glassgate.iam.expiry")


def run_expiries(*, deps: ServiceDeps) -> list[ExpiryOutcome]:
    """Remove every exception due to end through the configured vendor adapter, exactly once each (see
    :mod:`agent.iam_expiry`); the outcome of each one attempted. Nothing is due: nothing is built."""
    with deps.sessions() as s:
        if not due_expiries(s, now=deps.clock()):
            return []  # the usual case: the agent's dependencies need not even be built
    iam = deps.agent().iam
    vendor = getattr(iam, "vendor", None)
    if vendor is None:
        log.error("exceptions are due to end in a vendor IAM, but GLASSGATE_IAM is builtin: they stay overdue")
        return []
    return run_due_expiries(deps.sessions, adapter=vendor, ledger=deps.ledger, clock=deps.clock,
                            after_call=getattr(iam, "after_call", None))
