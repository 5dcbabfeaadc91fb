"""All four services as local processes, wired together without a mesh (`serve-all`).

Each service runs in its own process, as it would in its own pod, and productpage finds the
others through the same environment variables a Deployment would set (DETAILS_HOSTNAME,
DETAILS_SERVICE_PORT, ...). Their logs are shown with the service name in front.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from .server import PortInUseError, check_port_free

READY_TIMEOUT_SECONDS = 30.0
# Everything here is on loopback: a proxy the learner has set (HTTP_PROXY) must not get in between.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LOOPBACK = "127.0.0.1,localhost"
STOP_TIMEOUT_SECONDS = 10.0


class StartupError(RuntimeError):
    """A service did not come up; the message carries what it printed."""


@dataclass
class LocalService:
    name: str
    version: str
    port: int
    process: subprocess.Popen[str] | None = None
    output_tail: list[str] = field(default_factory=list)

    @property
    def pod_name(self) -> str:
        return f"{self.name}-{self.version}-local"


class LocalBookinfo:
    def __init__(self, reviews_version: str = "v1", port: int = 9080, host: str = "127.0.0.1"):
        self.host = host
        self.reviews_version = reviews_version
        self.services = [
            LocalService("productpage", "v1", port),
            LocalService("details", "v1", port + 1),
            LocalService("reviews", reviews_version, port + 2),
            LocalService("ratings", "v1", port + 3),
        ]
        self._stop_requested = False
        self._previous_handlers: dict[int, object] = {}

    def __enter__(self) -> LocalBookinfo:
        # Ctrl-C and SIGTERM only set a flag, checked at safe points below, so that a signal can
        # never land between starting a service and remembering it: whatever was started, stops.
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_requested = True

    def _pause(self, seconds: float) -> None:
        """Sleep a little, then stop here (KeyboardInterrupt) if a stop was asked for."""
        if not self._stop_requested:
            time.sleep(seconds)
        if self._stop_requested:
            raise KeyboardInterrupt

    def url(self, service: str, path: str = "") -> str:
        port = next(s.port for s in self.services if s.name == service)
        return f"http://{self.host}:{port}{path}"

    def start(self) -> None:
        for service in self.services:
            try:
                check_port_free(self.host, service.port)
            except PortInUseError:
                raise PortInUseError(
                    f"port {service.port} on {self.host} is already in use (wanted for "
                    f"{service.name}); serve-all uses --port and the three ports after it"
                ) from None
        environment = self._environment()
        for service in self.services:
            service.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bookinfo",
                    "serve",
                    service.name,
                    "--version",
                    service.version,
                    "--host",
                    self.host,
                    "--port",
                    str(service.port),
                ],
                env={**environment, "HOSTNAME": service.pod_name},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                # Own session: Ctrl-C in the terminal reaches only us, and we stop the services.
                start_new_session=True,
            )
            threading.Thread(target=self._relay_output, args=(service,), daemon=True).start()
            self._pause(0)
        for service in self.services:
            self._wait_ready(service)

    def _environment(self) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k != "SERVICES_DOMAIN"}
        for name in ("NO_PROXY", "no_proxy"):
            environment[name] = ",".join(filter(None, [environment.get(name), _LOOPBACK]))
        for service in self.services:
            prefix = service.name.upper()
            environment[f"{prefix}_HOSTNAME"] = self.host
            environment[f"{prefix}_SERVICE_PORT"] = str(service.port)
        return environment

    def _relay_output(self, service: LocalService) -> None:
        assert service.process is not None and service.process.stdout is not None
        for line in service.process.stdout:
            service.output_tail = [*service.output_tail[-19:], line.rstrip()]
            print(f"{service.name:<12}| {line}", end="", flush=True)

    def _wait_ready(self, service: LocalService) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        url = self.url(service.name, "/health")
        while time.monotonic() < deadline:
            assert service.process is not None
            if service.process.poll() is not None:
                tail = "\n  ".join(service.output_tail[-10:])
                raise StartupError(f"{service.name} stopped while starting:\n  {tail}")
            try:
                with _DIRECT.open(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            self._pause(0.1)  # poll interval while the service boots
        raise StartupError(
            f"{service.name} did not answer {url} within {READY_TIMEOUT_SECONDS:.0f} s"
        )

    def print_summary(self) -> None:
        print(f"\nBookinfo is running without a mesh (reviews {self.reviews_version}):")
        paths = {
            "productpage": "/productpage",
            "details": "/details/0",
            "reviews": "/reviews/0",
            "ratings": "/ratings/0",
        }
        for service in self.services:
            print(f"  {service.name:<12} {self.url(service.name, paths[service.name])}")
        print("Press Ctrl-C to stop.\n", flush=True)

    def wait(self) -> int:
        """Block until a service dies (returns 1); Ctrl-C and SIGTERM raise KeyboardInterrupt."""
        while True:
            for service in self.services:
                assert service.process is not None
                if service.process.poll() is not None:
                    print(
                        f"bookinfo: {service.name} exited with status "
                        f"{service.process.returncode}; stopping the others",
                        file=sys.stderr,
                    )
                    return 1
            self._pause(0.5)  # how often to look at the services

    def stop(self) -> None:
        running = [s.process for s in self.services if s.process and s.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)  # gunicorn finishes requests in flight
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
