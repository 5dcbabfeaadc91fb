"""`istiolab up`, `down` and `status` for the sandbox: start, stop and find its control plane.

The control plane runs in the background, so the learner's terminal is free; everything it
knows lives in .istiolab/ in the repository (git-ignored), so it survives its own restart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import IstiolabError
from . import api
from .api import INFO_FILE
from .processes import records
from .supervisor import Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Where the sandbox keeps its state: ISTIOLAB_STATE_DIR, read when called (so a variable set
    after import counts), else .istiolab/ in the repository."""
    return Path(os.environ.get("ISTIOLAB_STATE_DIR") or REPO_ROOT / ".istiolab")


STATE_DIR = state_dir()
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
PORT_FORWARD_PORT = 9080
ZIPKIN_PORT = 9411
METRICS_PORT = 15020
_STARTED: list[subprocess.Popen[bytes]] = []


def control_plane_port(state_dir: Path = STATE_DIR) -> int | None:
    """The running control plane's API port, or None when none is running."""
    try:
        info = json.loads((state_dir / INFO_FILE).read_text())
        alive = _alive(int(info["pid"]))
        return int(info["api_port"]) if alive else None
    except (OSError, ValueError, KeyError):
        return None


def up(
    gateway_port: int = 8080,
    port_forward_port: int = PORT_FORWARD_PORT,
    state_dir: Path = STATE_DIR,
    *,
    zipkin_port: int = ZIPKIN_PORT,
    metrics_port: int = METRICS_PORT,
) -> dict[str, Any]:
    """Start the sandbox (or find it running) and return its status once the mesh serves."""
    port = control_plane_port(state_dir)
    if port is not None:
        try:
            return api.call(port, "/status")
        except api.ControlPlaneUnreachable:
            pass  # its pid now belongs to another process: start a new control plane
    # The control plane reads ISTIOLAB_CERT_TTL; a bad value is reported here, with its fix.
    from .security.workload_certs import cert_ttl_from_environ  # loads cryptography: only for up

    cert_ttl_from_environ()
    # After a control-plane crash the gateway and port-forward still run (they are adopted
    # below), so their ports are only checked when nothing of the sandbox runs.
    if not _leftovers(state_dir):
        _require_free(
            gateway_port, "the ingress gateway", f"istiolab up --gateway-port {gateway_port + 100}"
        )
        _require_free(
            port_forward_port,
            "the port-forward to productpage",
            f"istiolab up --port-forward-port {port_forward_port + 100}",
        )
        _require_free(
            zipkin_port,
            "the Zipkin trace collector",
            f"stop the other Zipkin (or Jaeger), or istiolab up --zipkin-port {zipkin_port + 1}",
        )
        _require_free(
            metrics_port,
            "the request metrics",
            f"istiolab up --metrics-port {metrics_port + 100}",
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "logs" / "controlplane.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "istiolab.sandbox.daemon",
                str(state_dir),
                "--gateway-port",
                str(gateway_port),
                "--port-forward-port",
                str(port_forward_port),
                "--zipkin-port",
                str(zipkin_port),
                "--metrics-port",
                str(metrics_port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    # The control plane outlives this command; keep its Popen referenced so Python does not
    # warn that it is still running when this process ends.
    _STARTED.append(process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n  ".join(log.read_text(errors="replace").splitlines()[-15:])
            raise IstiolabError(
                f"the sandbox did not start:\n  {tail}",
                fix=f"read {log}; then istiolab down, and istiolab up again",
            )
        port = control_plane_port(state_dir)
        if port is not None:
            return api.call(port, "/status")
        time.sleep(0.2)  # poll interval while the mesh starts
    # It never became ready: stop it, and whatever it started, rather than leave them running.
    process.kill()
    process.wait()
    if (state_dir / "processes").exists():
        Supervisor(state_dir / "processes", resume=False).close(stop_processes=True)
    raise IstiolabError(
        f"the sandbox did not start within {START_TIMEOUT:.0f} s", fix=f"read {log}"
    )


def down(state_dir: Path = STATE_DIR) -> None:
    """Stop the control plane and every process it started; harmless when nothing runs."""
    port = control_plane_port(state_dir)
    if port is not None:
        pid = json.loads((state_dir / INFO_FILE).read_text())["pid"]
        api.call(port, "/shutdown")
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # poll interval while it stops the processes
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)  # it did not stop in time; its processes are below
            while _alive(pid):
                time.sleep(0.05)
    # Whatever is left (the control plane crashed, or did not finish): stop it by its records,
    # without first restarting what died meanwhile.
    if (state_dir / "processes").exists():
        Supervisor(state_dir / "processes", resume=False).close(stop_processes=True)


def status(state_dir: Path = STATE_DIR) -> dict[str, Any]:
    port = control_plane_port(state_dir)
    if port is None:
        raise IstiolabError("the sandbox is not running", fix="istiolab up")
    return api.call(port, "/status")


def _leftovers(state_dir: Path) -> bool:
    """Whether processes of this sandbox still run (its control plane crashed)."""
    try:
        processes = records.load(state_dir / "processes")
    except (OSError, ValueError):
        return False
    return any(p.get("pid") and _alive(int(p["pid"])) for p in processes)


def _alive(pid: int) -> bool:
    for process in _STARTED:  # started by this process: poll() also reaps it
        if process.pid == pid:
            return process.poll() is None
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _require_free(port: int, what: str, fix: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise IstiolabError(
                f"port {port} on 127.0.0.1 is already in use; the sandbox needs it for {what}",
                fix=fix,
            ) from None
