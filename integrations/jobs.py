"""Durable background jobs over the ``jobs`` table, and the worker thread that runs them.

A job is enqueued in the caller's transaction (so it exists exactly when what asked for it does) under an
idempotency key ``(kind, key)``. A worker claims one with a single conditional UPDATE (the row is queued and
due, or running under a lease that has expired because its worker died) and checks the row count, so two
workers, threads or processes, on SQLite or PostgreSQL, never both win. Every later write by the worker is
fenced on ``locked_by``: a worker whose lease was taken over can neither finish nor fail the job any more.

A handler returns a :class:`Done`, whose ``finish`` callback writes the job's effect in the very transaction
that marks it done; that is what makes a local effect exactly-once. A :class:`Transient` error (or any
unexpected exception) is retried with exponential backoff until ``max_attempts``; a :class:`Permanent` error,
or the last attempt, marks the job ``dead`` with the reason in ``last_error``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import CursorResult, Executable, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from risk.store.service import JobRow

log = logging.getLogger("glassgate.jobs")

LEASE_MS = 120_000  # far above a handler's worst case (three HTTP calls of at most 10 s each)
MAX_ATTEMPTS = 6


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt ``n + 1`` after ``n`` failed attempts: base * factor**(n-1), capped."""

    base_ms: int = 2_000
    factor: float = 4.0
    cap_ms: int = 15 * 60_000

    def delay_ms(self, failed_attempts: int) -> int:
        return int(min(self.cap_ms, self.base_ms * self.factor ** max(0, failed_attempts - 1)))


class Transient(Exception):
    """Try again later (a dependency is down or slow)."""


class Permanent(Exception):
    """Retrying cannot help (the request was refused as invalid); the job goes dead at once."""


class LeaseLost(Exception):
    """Another worker took the job over: this worker's result is discarded."""


@dataclass(frozen=True)
class Claimed:
    """A job this worker holds."""

    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int  # including this one
    max_attempts: int
    progress: dict[str, Any]  # what earlier attempts recorded with JobQueue.note


@dataclass
class Done:
    """A handler's success: ``result`` is stored on the job; ``finish(session)`` runs in the same transaction."""

    result: dict[str, Any]
    finish: Callable[[Session], None] | None = None


Handler = Callable[["Claimed", "JobQueue"], Done]


def _rowcount(s: Session, stmt: Executable) -> int:
    result = s.execute(stmt)
    assert isinstance(result, CursorResult)
    return result.rowcount


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def enqueue(s: Session, *, kind: str, key: str, payload: dict[str, Any], now_ms: int,
            max_attempts: int = MAX_ATTEMPTS) -> tuple[JobRow, bool]:
    """Add a job in the caller's transaction; ``(job, created)``. The same ``(kind, key)`` gives the existing job.
    A concurrent insert of the same key makes the caller's commit fail with IntegrityError (retry then)."""
    existing = s.scalar(select(JobRow).where(JobRow.kind == kind, JobRow.key == key))
    if existing is not None:
        return existing, False
    job = JobRow(kind=kind, key=key, payload=payload, status=JobStatus.QUEUED.value, attempts=0,
                 max_attempts=max_attempts, run_after_ms=now_ms, created_ms=now_ms, updated_ms=now_ms)
    s.add(job)
    s.flush()
    return job, True


@dataclass
class JobQueue:
    """Claims and settles jobs as one worker (``worker_id``). ``clock_ms`` is injectable for tests."""

    sessions: sessionmaker[Session]
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    clock_ms: Callable[[], int] = wall_ms
    lease_ms: int = LEASE_MS
    backoff: Backoff = field(default_factory=Backoff)
    write_lock: AbstractContextManager[Any] | None = None  # the app's lock around writes, if it has one

    def _locked(self) -> AbstractContextManager[Any]:
        return self.write_lock if self.write_lock is not None else nullcontext()

    def claim(self, kinds: tuple[str, ...] | None = None) -> Claimed | None:
        """Take the next due job (or one whose lease expired), or None."""
        now = self.clock_ms()
        due = or_(and_(JobRow.status == JobStatus.QUEUED.value, JobRow.run_after_ms <= now),
                  and_(JobRow.status == JobStatus.RUNNING.value, JobRow.locked_until_ms < now,
                       JobRow.attempts < JobRow.max_attempts))
        expired_last = and_(JobRow.status == JobStatus.RUNNING.value, JobRow.locked_until_ms < now,
                            JobRow.attempts >= JobRow.max_attempts)
        with self.sessions() as s:  # reads only: polling takes no write lock
            query = select(JobRow.id).where(due).order_by(JobRow.run_after_ms, JobRow.id).limit(8)
            if kinds is not None:
                query = query.where(JobRow.kind.in_(kinds))
            candidates = list(s.scalars(query))
            reap = s.scalar(select(JobRow.id).where(expired_last).limit(1)) is not None
        if reap:  # a worker died holding the last attempt: nothing is left to try
            with self._locked(), self.sessions.begin() as s:
                s.execute(update(JobRow).where(expired_last)
                          .values(status=JobStatus.DEAD.value, locked_by=None, locked_until_ms=None, updated_ms=now,
                                  last_error="the worker holding the last attempt stopped before finishing "
                                             "(lease expired)")
                          .execution_options(synchronize_session=False))
        for job_id in candidates:
            with self._locked(), self.sessions.begin() as s:
                won = _rowcount(s, update(JobRow).where(JobRow.id == job_id, due)
                                .values(status=JobStatus.RUNNING.value, locked_by=self.worker_id,
                                        locked_until_ms=now + self.lease_ms, attempts=JobRow.attempts + 1,
                                        updated_ms=now)
                                .execution_options(synchronize_session=False))
                if won != 1:
                    continue  # another worker was faster
                row = s.get_one(JobRow, job_id)
                progress = (row.result or {}).get("progress", {}) if isinstance(row.result, dict) else {}
                return Claimed(id=row.id, kind=row.kind, key=row.key, payload=dict(row.payload),
                               attempts=row.attempts, max_attempts=row.max_attempts, progress=dict(progress))
        return None

    def _fenced(self, job: Claimed) -> Any:
        return and_(JobRow.id == job.id, JobRow.status == JobStatus.RUNNING.value, JobRow.locked_by == self.worker_id)

    def note(self, job: Claimed, progress: dict[str, Any]) -> None:
        """Record progress (say, the id of a comment already posted) that a retry of this job will see.

        Raises:
            LeaseLost: the job is no longer this worker's.
        """
        with self._locked(), self.sessions.begin() as s:
            n = _rowcount(s, update(JobRow).where(self._fenced(job))
                          .values(result={"progress": {**job.progress, **progress}}, updated_ms=self.clock_ms())
                          .execution_options(synchronize_session=False))
            if n != 1:
                raise LeaseLost(f"job {job.id} is no longer held by {self.worker_id}")
        job.progress.update(progress)

    def complete(self, job: Claimed, done: Done) -> None:
        """Mark the job done with its result and write its effect, in one transaction.

        Raises:
            LeaseLost: the job is no longer this worker's; nothing was written.
        """
        with self._locked(), self.sessions.begin() as s:
            n = _rowcount(s, update(JobRow).where(self._fenced(job))
                          .values(status=JobStatus.DONE.value, result=done.result, locked_by=None,
                                  locked_until_ms=None, last_error=None, updated_ms=self.clock_ms())
                          .execution_options(synchronize_session=False))
            if n != 1:
                raise LeaseLost(f"job {job.id} is no longer held by {self.worker_id}")
            if done.finish is not None:
                done.finish(s)

    def fail(self, job: Claimed, error: str, *, permanent: bool = False) -> JobStatus:
        """Schedule a retry with backoff, or mark the job dead (permanent, or no attempt left)."""
        now = self.clock_ms()
        dead = permanent or job.attempts >= job.max_attempts
        values: dict[str, Any] = {"locked_by": None, "locked_until_ms": None, "last_error": error[:2000],
                                  "updated_ms": now}
        if dead:
            values["status"] = JobStatus.DEAD.value
        else:
            values.update(status=JobStatus.QUEUED.value, run_after_ms=now + self.backoff.delay_ms(job.attempts))
        with self._locked(), self.sessions.begin() as s:
            n = _rowcount(s, update(JobRow).where(self._fenced(job)).values(**values)
                          .execution_options(synchronize_session=False))
            if n != 1:
                raise LeaseLost(f"job {job.id} is no longer held by {self.worker_id}")
        return JobStatus.DEAD if dead else JobStatus.QUEUED


def run_one(queue: JobQueue, handlers: Mapping[str, Handler]) -> Claimed | None:
    """Claim one job, run its handler and settle it; the job handled, or None when nothing was due."""
    job = queue.claim(tuple(handlers))
    if job is None:
        return None
    try:
        done = handlers[job.kind](job, queue)
    except LeaseLost:
        log.warning("job %s: lease lost while running; another worker has it", job.id)
        return job
    except Permanent as exc:
        queue.fail(job, f"{type(exc).__name__}: {exc}", permanent=True)
        return job
    except Exception as exc:  # noqa: BLE001 - anything unexpected is retried, then dead-lettered
        log.warning("job %s attempt %s failed: %s", job.id, job.attempts, exc, exc_info=not isinstance(exc, Transient))
        try:
            queue.fail(job, f"{type(exc).__name__}: {exc}")
        except LeaseLost:
            log.warning("job %s: lease lost before the failure could be recorded", job.id)
        return job
    try:
        queue.complete(job, done)
    except LeaseLost:
        log.warning("job %s: lease lost before completion; its result is discarded", job.id)
    except IntegrityError as exc:  # the effect itself could not be written: retry it later
        queue.fail(job, f"IntegrityError: {exc.orig}")
    return job


class Worker:
    """The service's job worker: a daemon thread that polls for due jobs and runs them one at a time."""

    def __init__(self, queue: JobQueue, handlers: Mapping[str, Handler], *, poll_seconds: float = 0.5):
        self.queue, self.handlers, self.poll_seconds = queue, dict(handlers), poll_seconds
        self._stop = threading.Event()
        self._work = threading.Event()  # set by wake() and stop(): cuts the poll wait short
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the worker is already started")
        self._thread = threading.Thread(target=self._run, name=f"glassgate-worker-{self.queue.worker_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to stop after the job in hand (if any) and wait for it."""
        self._stop.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("job worker did not stop within %s s; its lease will expire", timeout)
            self._thread = None

    def wake(self) -> None:
        """Look for work now (a job was just enqueued in this process) instead of at the next poll. Jobs
        enqueued elsewhere, retries and taken-over leases are still found by polling."""
        self._work.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = run_one(self.queue, self.handlers)
            except Exception:  # noqa: BLE001 - the database may be briefly unavailable: keep the worker alive
                log.exception("job worker: claiming or settling a job failed")
                handled = None
            if handled is None:
                self._work.wait(self.poll_seconds)
                self._work.clear()
