"""Sandboxes for tests: each on free ports of its own, so several can run side by side, driven
with the real `istiolab` command as a learner drives it.

A sandbox listens on four well-known ports (the gateway's 8080, the port-forward's 9080,
Zipkin's 9411, the metrics' 15020); tests run several sandboxes at once (one per xdist
worker), so each gets free ports instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from istiolab.sandbox import lifecycle
from live import closed_port as free_port  # nothing listens there: free for a sandbox to bind

__all__ = ["LabSandbox", "SandboxPorts", "free_port"]


@dataclass(frozen=True)
class SandboxPorts:
    gateway: int = field(default_factory=free_port)
    forward: int = field(default_factory=free_port)
    zipkin: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)

    def up(self, state_dir: Path) -> dict[str, Any]:
        """Start (or, after a control-plane crash, resume) the sandbox in `state_dir`."""
        return lifecycle.up(
            self.gateway,
            self.forward,
            state_dir=state_dir,
            zipkin_port=self.zipkin,
            metrics_port=self.metrics,
        )


class LabSandbox:
    """One sandbox: its state in `root/state`, the YAML files a test applies in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.ports = SandboxPorts()

    def up(self) -> dict[str, Any]:
        return self.ports.up(self.state_dir)

    def istiolab(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The real command, in its own process; with `check`, it must succeed."""
        result = subprocess.run(
            [sys.executable, "-m", "istiolab", *args],
            env={**os.environ, "ISTIOLAB_STATE_DIR": str(self.state_dir)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def apply(self, yaml_text: str, name: str = "lab.yaml") -> str:
        path = self.root / name
        path.write_text(yaml_text)
        return self.istiolab("apply", "-f", str(path)).stdout

    def delete(self, yaml_text: str, name: str = "lab.yaml") -> None:
        path = self.root / name
        path.write_text(yaml_text)
        self.istiolab("delete", "-f", str(path))

    def status(self) -> dict[str, Any]:
        return lifecycle.status(self.state_dir)
