"""Running kubectl and istioctl: one tool, one context, a fixed argument list and a timeout.

A `Runner` turns the three ways a cluster cannot answer at all (no tool, no such context, no
reachable API server) into a TargetUnavailable that says what to do (`classify_failure`); any
other failure is a CommandFailed. Which context and which istioctl to run by default are here too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from ... import versions
from ...errors import IstiolabError
from ..base import TargetUnavailable
from .layout import REPO_ROOT

KUBECTL_TIMEOUT = 30.0  # seconds for one kubectl call that is not itself waiting on something


class CommandFailed(IstiolabError):
    """kubectl or istioctl ran and failed for a reason other than an unreachable cluster."""

    def __init__(self, command: Sequence[str], returncode: int, stderr: str, fix: str = "") -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"`{' '.join(self.command)}` failed: {_first_error(stderr)}", fix)

    @property
    def not_found(self) -> bool:
        return "NotFound" in self.stderr or "not found" in self.stderr


# klog lines ("E1125 21:21:19.041498 10349 memcache.go:265] ...") repeat what the last line says.
_KLOG = re.compile(r"^[EIWF]\d{4} \d\d:\d\d:\d\d")


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not _KLOG.match(line)]
    return (meaningful or lines or ["(no error output)"])[-1]


_UNKNOWN_CONTEXT = (
    re.compile(r"context was not found for specified context"),
    re.compile(r'context "[^"]*" does not exist'),
)
_UNREACHABLE = (
    "The connection to the server",
    "Unable to connect to the server",
    "connect: connection refused",
    "no such host",
    "i/o timeout",
    "TLS handshake timeout",
    "context deadline exceeded",
)


def _cluster_fix(context: str) -> str:
    if context.startswith("kind-"):
        cluster = context.removeprefix("kind-")
        return (
            f"start the kind node again (docker start {cluster}-control-plane), or recreate the"
            " cluster: ./scripts/cluster-down.sh && ./scripts/cluster-up.sh"
        )
    return f"check that the cluster answers: kubectl --context {context} cluster-info"


def classify_failure(tool: str, context: str, stderr: str) -> TargetUnavailable | None:
    """The TargetUnavailable for a failure that means the cluster cannot be asked at all."""
    if any(pattern.search(stderr) for pattern in _UNKNOWN_CONTEXT):
        return TargetUnavailable(
            f"{tool} has no context {context!r} in its kubeconfig",
            fix=(
                "create the kind cluster with ./scripts/cluster-up.sh, or point KUBE_CONTEXT at an"
                " existing context (kubectl config get-contexts -o name)"
            ),
        )
    if any(marker in stderr for marker in _UNREACHABLE):
        return TargetUnavailable(
            f"the cluster of context {context!r} does not answer: {_first_error(stderr)}",
            fix=_cluster_fix(context),
        )
    return None


class Runner:
    """Runs one tool (kubectl or istioctl) against one context: fixed arguments, a timeout."""

    def __init__(self, tool: str, binary: str, context: str, timeout: float = KUBECTL_TIMEOUT):
        self.tool = tool
        self.binary = binary
        self.context = context
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--context", self.context, *args]

    def missing(self) -> TargetUnavailable:
        if self.tool == "kubectl":
            fix = (
                "install kubectl (https://kubernetes.io/docs/tasks/tools/) and put it on PATH;"
                " ./scripts/cluster-up.sh --check lists every prerequisite"
            )
        else:
            fix = f"./scripts/cluster-up.sh downloads the pinned {self.tool} into .bin/"
        return TargetUnavailable(f"{self.tool} was not found ({self.binary})", fix=fix)

    def failure(self, args: Sequence[str], returncode: int, stderr: str) -> IstiolabError:
        unavailable = classify_failure(self.tool, self.context, stderr)
        if unavailable is not None:
            return unavailable
        return CommandFailed([self.tool, *args], returncode, stderr)

    def run(
        self, *args: str, input: str | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the tool and return what it did, failed or not; raise only when it could not run."""
        limit = timeout or self.timeout
        try:
            return subprocess.run(
                self.argv(*args),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
            )
        except FileNotFoundError:
            raise self.missing() from None
        except subprocess.TimeoutExpired:
            raise TargetUnavailable(
                f"`{self.tool} {' '.join(args)}` did not finish within {limit:g}s",
                fix=_cluster_fix(self.context),
            ) from None

    def check(self, *args: str, input: str | None = None, timeout: float | None = None) -> str:
        """Run the tool; its stdout, or an error that says what failed."""
        completed = self.run(*args, input=input, timeout=timeout)
        if completed.returncode != 0:
            raise self.failure(args, completed.returncode, completed.stderr)
        return completed.stdout

    def get_json(self, *args: str, timeout: float | None = None) -> Any:
        """`TOOL --context CTX ARGS -o json`, parsed."""
        output = self.check(*args, "-o", "json", timeout=timeout)
        try:
            return json.loads(output)
        except ValueError as error:
            raise CommandFailed([self.tool, *args, "-o", "json"], 0, f"not JSON: {error}") from None


# --- Which context, which istioctl -------------------------------------------------------------


def default_context() -> str:
    """$KUBE_CONTEXT, else the kind cluster's context: kind-${KIND_CLUSTER_NAME}."""
    return os.environ.get("KUBE_CONTEXT") or f"kind-{versions.get('KIND_CLUSTER_NAME')}"


def find_istioctl() -> str | None:
    """The pinned istioctl that cluster-up.sh downloads, else one on PATH."""
    pinned = REPO_ROOT / ".bin" / f"istio-{versions.get('ISTIO_VERSION')}" / "bin" / "istioctl"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    return shutil.which("istioctl")
