"""A background task the service runs every ``interval`` seconds on a daemon thread (the approval sweep,
the audit checkpoint): ``start``, ``stop`` (waits for the run in hand), and ``run_once`` to override."""

from __future__ import annotations

import threading
from typing import Any


class Periodic:
    name = "glassgate-periodic"

    def __init__(self, *, interval: float):
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Any:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.run_once()
