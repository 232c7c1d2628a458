"""A private PostgreSQL cluster for the fault tests: ``initdb`` in a fresh directory, on a free port of
127.0.0.1, stopped and started by the test. The machine's shared server is never touched.

PostgreSQL refuses to run as root: when the tests run as root, the cluster's directory belongs to the
``postgres`` user and every server binary runs through ``runuser -u postgres --``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.procserver import free_port


def pg_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (or on PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def missing() -> str | None:
    """Why a private cluster cannot be started here, or None."""
    if pg_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


class PrivatePg:
    """``start()``, ``stop()`` (fast: sessions are cut), ``start()`` again; ``close()`` removes it all."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        assert bindir is not None, missing()
        self.bindir = bindir
        self.port = free_port()
        # not under pytest's tmp_path: its parents are private to root and the server runs as postgres
        self.root = Path(tempfile.mkdtemp(prefix="glassgate-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:  # a throwaway cluster: speed over durability
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = "
                       f"'{self.root}'\nfsync = off\nfull_page_writes = off\nmax_connections = 50\n")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / binary), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, cwd=self.root)
        assert res.returncode == 0, f"{binary} failed ({res.returncode}): {res.stdout}\n{res.stderr}\n{self.log()}"
        return res

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: open sessions are terminated, the server is gone when this returns."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, timeout=30, cwd=self.root).returncode == 0

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            if self.data.exists() and self.running():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
