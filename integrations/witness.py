"""The service's periodic audit checkpoint: verify the whole ledger and move the witness file forward.

A checkpoint reads every entry (that is what makes it a verification), so the service does not run one
per request: this thread runs one every ``interval`` seconds when the ledger grew, and once more at
shutdown. A failed verification is not retried silently: it is logged with the first bad entry and
kept in ``last_report`` (the metrics endpoint exports it), and the witness is left untouched.
"""

from __future__ import annotations

import logging
from typing import Any

from integrations.periodic import Periodic
from risk.audit import LedgerError, VerifyReport

log = logging.getLogger("glassgate.audit")


class Checkpointer(Periodic):
    name = "glassgate-audit-checkpoint"

    def __init__(self, runtime: Any, *, interval: float):
        super().__init__(interval=interval)
        self._rt = runtime
        self.checkpointed_size: int | None = None
        self.last_report: VerifyReport | None = None
        self.runs = 0

    def stop(self) -> None:
        super().stop()
        self.run_once()  # what the last requests appended is covered before the process exits

    def run_once(self) -> VerifyReport | None:
        """Checkpoint if the ledger grew since the last one; returns the report of this run, if any."""
        try:
            with self._rt.sessions() as s:
                size = self._rt.ledger.size(s)
                if size == self.checkpointed_size:
                    return None
                head = self._rt.ledger.checkpoint(s)
                self.checkpointed_size = head.size
                self.last_report = VerifyReport(ok=True, size=head.size, root=head.root, first_bad_seq=None,
                                                problem=None, checked_at=self._rt.clock())
        except LedgerError as exc:
            self.last_report = exc.report
            log.error("audit checkpoint refused: %s", exc)
        except Exception:  # noqa: BLE001 - e.g. the database is down; the next run tries again
            log.exception("audit checkpoint failed")
            return None
        finally:
            self.runs += 1
        return self.last_report
