"""Request headers must arrive within a bounded time: a client trickling header bytes is disconnected."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from integrations.httpguard import protocol


@contextmanager
def _serving(app: FastAPI, header_timeout: float) -> Iterator[int]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           http=protocol(header_timeout), timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def _closed_while_trickling(port: int, *, max_bytes: int) -> bool:
    """Send a request's headers one byte per poll; True once the server has closed the connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        for _ in range(max_bytes):
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                return sock.recv(1024) == b""
            try:
                sock.sendall(b"y")  # one more byte of a header name that never ends
            except (BrokenPipeError, ConnectionResetError):
                return True
    return False


def test_a_client_that_trickles_its_headers_is_disconnected():
    with _serving(_app(), header_timeout=1.0) as port:
        assert _closed_while_trickling(port, max_bytes=300), "still connected after 300 trickled bytes"


def test_prompt_requests_on_a_kept_alive_connection_are_served():
    with _serving(_app(), header_timeout=1.0) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(3):
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while b'{"pong":"yes"}' not in got:
                chunk = sock.recv(4096)
                assert chunk, "closed before the answer"
                got += chunk
            assert got.startswith(b"HTTP/1.1 200")
