"""`kubectl port-forward` to a Service for the length of a block, on a free local port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from ..base import TargetUnavailable
from .runner import Runner

PORT_FORWARD_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def port_forward(
    runner: Runner,
    target: str,
    remote_port: int,
    *,
    namespace: str,
    timeout: float = PORT_FORWARD_TIMEOUT,
) -> Iterator[int]:
    """`kubectl port-forward` to `target` ("svc/prometheus") on a free local port, for a block.

    Yields the local port once it accepts connections; stops kubectl afterwards. If kubectl exits
    first, its error is raised (a TargetUnavailable when the cluster cannot be reached).
    """
    local_port = free_port()
    args = (
        "port-forward",
        "--address",
        "127.0.0.1",
        "-n",
        namespace,
        target,
        f"{local_port}:{remote_port}",
    )
    try:
        process = subprocess.Popen(
            runner.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise runner.missing() from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", local_port), timeout=1.0):
                    break
            except OSError:
                pass
            if process.poll() is not None:
                stderr = process.stderr.read() if process.stderr else ""
                raise runner.failure(args, process.returncode, stderr)
            if time.monotonic() >= deadline:
                raise TargetUnavailable(
                    f"`kubectl port-forward -n {namespace} {target}` did not open port"
                    f" {local_port} within {timeout:g}s",
                    fix=f"kubectl --context {runner.context} -n {namespace} get {target} -o wide",
                )
            # The pause between two probes, cut short if kubectl exits.
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.05)
        yield local_port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
