"""Serving one Bookinfo service with gunicorn, the same way the container images do.

One worker process with threads: the services are I/O-bound (they mostly wait on each other), a
single process keeps ratings' in-memory store and productpage's metrics consistent, and memory
stays small. The app is created before gunicorn starts, so a bad setting stops the service with a
one-line message instead of a worker crashing in a loop.
"""

from __future__ import annotations

import errno
import os
import socket

from flask import Flask
from gunicorn.app.base import BaseApplication

from .config import Settings

THREADS = 8
SHM = "/dev/shm"  # noqa: S108 (memory-backed, only for gunicorn's heartbeat file)


class PortInUseError(OSError):
    """The address a service should listen on is taken."""


def create_service_app(service: str, settings: Settings | None = None) -> Flask:
    # Imported here so that serving one service does not import the other three.
    if service == "productpage":
        from .productpage import create_app
    elif service == "details":
        from .details import create_app
    elif service == "reviews":
        from .reviews import create_app
    elif service == "ratings":
        from .ratings import create_app
    else:
        raise ValueError(f"unknown service {service!r}")
    return create_app(settings)


def gunicorn_options(host: str, port: int, threads: int = THREADS) -> dict[str, object]:
    bind_host = f"[{host}]" if ":" in host else host  # IPv6 addresses are bracketed
    options: dict[str, object] = {
        "bind": [f"{bind_host}:{port}"],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 2,
        # Longer than any call a service makes (reviews v2 waits up to 10 s for ratings).
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": "-",
        "errorlog": "-",
        "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
        # The worker heartbeat file: /dev/shm works with a read-only root filesystem.
        "worker_tmp_dir": SHM if os.path.isdir(SHM) else None,
        # gunicorn >= 25.1 opens a control socket in $HOME by default; a pod does not need one,
        # and several services on one machine would fight over its path.
        "control_socket_disable": True,
    }
    return options


class _Server(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, object]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def check_port_free(host: str, port: int) -> None:
    """Fail early, with a message naming the port, if something already listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    exc.errno, f"port {port} on {host} is already in use"
                ) from None
            raise


def serve(app: Flask, host: str, port: int, threads: int = THREADS) -> None:
    """Serve until SIGINT or SIGTERM, then finish the requests in flight and return."""
    check_port_free(host, port)
    _Server(app, gunicorn_options(host, port, threads)).run()
