"""Real HTTP servers on loopback for the tests: our apps, and scriptable stand-ins for their peers.

Nothing here mocks a request: every test talks HTTP over a socket to a server listening on
127.0.0.1, on a port the kernel picked. Servers run in daemon threads and stop at teardown.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask
from werkzeug.serving import make_server

from bookinfo.config import Settings

HOST = "127.0.0.1"
POLL = 0.02  # how often a server checks for shutdown: keeps teardown fast


class LiveApp:
    """A Flask app served by werkzeug's threaded server on a free loopback port."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server = make_server(HOST, 0, app, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, args=(POLL,), daemon=True).start()

    def url(self, path: str = "") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Reply:
    """What an Upstream answers: a status and body, after an optional delay, or nothing at all."""

    status: int = 200
    body: bytes | str = b""
    content_type: str = "application/json"
    delay: float = 0.0
    hang_up: bool = False  # close the connection without answering

    def payload(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Upstream:
    """A stand-in for a service our app calls. It records every request it receives."""

    reply: Reply | Callable[[Recorded], Reply] = field(default_factory=Reply)
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                    at=time.monotonic(),
                )
                upstream.requests.append(recorded)
                reply = upstream.reply(recorded) if callable(upstream.reply) else upstream.reply
                if reply.delay:
                    time.sleep(reply.delay)  # the point of this reply: answer late
                if reply.hang_up:
                    self.close_connection = True
                    return
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, which is what slow replies test

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(POLL,), daemon=True).start()

    def url(self, path: str = "") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ServiceProcess:
    """`python -m bookinfo serve SERVICE` as a real process (gunicorn, as in the images)."""

    def __init__(self, service: str, environ: dict[str, str], ready_seconds: float = 20.0) -> None:
        self.port = closed_port()
        self._args = [sys.executable, "-m", "bookinfo", "serve", service, "--port", str(self.port)]
        self._environ = environ
        self._ready_seconds = ready_seconds

    def url(self, path: str = "") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def __enter__(self) -> ServiceProcess:
        self.process = subprocess.Popen(
            self._args,
            env=self._environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self._ready_seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)  # poll interval while gunicorn boots
        self.__exit__()
        raise RuntimeError(f"{' '.join(self._args)} did not start listening")

    def __exit__(self, *exc_info: object) -> None:
        stop(self.process)


def stop(process: subprocess.Popen) -> None:
    """Stop a process this test started: SIGTERM, then SIGKILL if it has not ended within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def settings_for(**peers: int) -> dict[str, object]:
    """Settings fields pointing each named service (details=PORT, ...) at a loopback port."""
    fields: dict[str, object] = {}
    for name, port in peers.items():
        fields[f"{name}_hostname"] = HOST
        fields[f"{name}_port"] = port
    return fields


def make_settings(**fields: object) -> Settings:
    return Settings(**fields)  # type: ignore[arg-type]
