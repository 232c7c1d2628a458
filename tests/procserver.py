"""`glassgate serve` as a separate process for the fault tests: start it over a home, wait until it answers,
kill it with SIGKILL (no clean-up runs), stop it with SIGTERM, start it again over the same state.

The process's output goes to a file (never a pipe nobody reads, which would block a chatty server), kept
across restarts so a failing test can show what each incarnation said.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.apiserver import Home, wait_for

GLASSGATE = str(Path(sys.executable).with_name("glassgate"))
# anything that could switch a channel on or point the service elsewhere is dropped from the inherited env
_DROPPED = ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_API_URL", "OPENAI_API_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """One glassgate service, restartable: each :meth:`start` is a new process on the same port and home."""

    def __init__(self, home: Home, log_dir: Path, **env: str):
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env)
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = log_dir / "serve-0.log"

    def env(self, **overrides: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("GLASSGATE_") and k not in _DROPPED}
        return {**base, "GLASSGATE_HOME": str(self.home.home), "GLASSGATE_CONFIG": str(self.home.config),
                **self.extra_env, **overrides}

    def start(self, *, timeout: float = 90.0, **env: str) -> float:
        """Start a new incarnation with ``env`` on top of the constructor's; wait for /healthz. Returns the
        seconds it took to answer."""
        assert self.proc is None or self.proc.poll() is not None, "the previous incarnation is still running"
        self.starts += 1
        self.log_path = self.log_dir / f"serve-{self.starts}.log"
        t0 = time.monotonic()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([GLASSGATE, "serve", "--port", str(self.port)], env=self.env(**env),
                                         stdout=out, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"glassgate serve exited with {self.proc.returncode}:\n{self.log()}"
            try:
                return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=timeout, what="glassgate serve to answer /healthz")
        return time.monotonic() - t0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> int:
        """SIGKILL: the process dies at once, nothing of it runs any more. Returns its exit status."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM: a graceful stop. Returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end by itself (a failpoint); its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, role: str | None = None, *, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.home.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def cli(self, *args: str, timeout: float = 120.0, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``glassgate ARGS`` over the same home and database (env of the service)."""
        return subprocess.run([GLASSGATE, *args], env=self.env(**env), text=True, capture_output=True,
                              timeout=timeout)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@contextmanager
def service(home: Home, log_dir: Path, **env: Any) -> Iterator[ServiceProcess]:
    """A :class:`ServiceProcess` that is never left running after the test (started by the caller)."""
    svc = ServiceProcess(home, log_dir, **{k: str(v) for k, v in env.items()})
    try:
        yield svc
    finally:
        svc.ensure_dead()
