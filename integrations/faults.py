"""Failpoints: a test hook that makes the service kill itself at a named point, so the reliability tests can
show that nothing is lost when a process dies there.

Armed with ``GLASSGATE_FAILPOINTS`` (through :class:`integrations.settings.Settings`), a comma-separated list
of ``name=action``, for example ``GLASSGATE_FAILPOINTS=after_approval_commit=kill``. Off by default; never
arm one in production. The service logs a warning at start-up naming every armed failpoint, and a line on
standard error when one fires, just before the process sends itself SIGKILL (no clean-up runs, as when the
machine loses power or the OOM killer strikes).

Points:

- ``after_approval_commit``: the approval that completed a proposal is committed and the IAM adapter has not
  been called yet (``agent.proposals.execute_approved``'s ``before_execute``).
- ``after_iam_call``: a vendor IAM adapter applied an action (or removed an exception at its end) and
  glassgate has not committed its record yet (``agent.iam_bridge.VendorIam``'s ``after_call``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from enum import StrEnum

log = logging.getLogger("glassgate.faults")

ENV_VAR = "GLASSGATE_FAILPOINTS"


class Failpoint(StrEnum):
    AFTER_APPROVAL_COMMIT = "after_approval_commit"
    AFTER_IAM_CALL = "after_iam_call"


class FaultAction(StrEnum):
    KILL = "kill"


class FailpointError(ValueError):
    """``GLASSGATE_FAILPOINTS`` names an unknown point or action."""


def parse(spec: str | None) -> dict[Failpoint, FaultAction]:
    """``"name=action,..."`` -> the armed points. An empty or unset spec arms nothing.

    Raises:
        FailpointError: an item is not ``name=action`` with a known name and action (the message names it).
    """
    armed: dict[Failpoint, FaultAction] = {}
    for item in (x.strip() for x in (spec or "").split(",")):
        if not item:
            continue
        name, sep, action = (x.strip() for x in item.partition("="))
        if not sep or name not in Failpoint.__members__.values() or action not in FaultAction.__members__.values():
            raise FailpointError(
                f"{ENV_VAR} item {item!r} is not name=action with name one of "
                f"{', '.join(Failpoint)} and action one of {', '.join(FaultAction)}")
        armed[Failpoint(name)] = FaultAction(action)
    return armed


def _kill_self(point: Failpoint, subject: str) -> None:
    # stderr, flushed: the process is about to vanish without running any handler
    print(f"glassgate: failpoint {point.value} fired for {subject}: pid {os.getpid()} kills itself (SIGKILL)",
          file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def hook(armed: Mapping[Failpoint, FaultAction], point: Failpoint) -> Callable[[str], None] | None:
    """The callable to hand inward for ``point`` (it takes the subject, e.g. the proposal id), or None when
    the point is not armed."""
    action = armed.get(point)
    if action is None:
        return None
    assert action is FaultAction.KILL

    def fire(subject: str) -> None:
        _kill_self(point, subject)

    return fire


def warn_if_armed(armed: Mapping[Failpoint, FaultAction]) -> None:
    """Log a warning naming every armed failpoint (called once at service start-up)."""
    if armed:
        log.warning("FAILPOINTS ARMED (a test hook; the process will kill itself there): %s",
                    ", ".join(f"{p.value}={a.value}" for p, a in armed.items()))
