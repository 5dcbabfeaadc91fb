"""Sandboxes for tests: each on free ports of its own, so several can run side by side.

A sandbox listens on four well-known ports (the gateway's 8080, the port-forward's 9080,
Zipkin's 9411, the metrics' 15020); tests run several sandboxes at once (one per xdist
worker), so each gets free ports instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from istiolab.sandbox import lifecycle
from live import closed_port as free_port  # nothing listens there: free for a sandbox to bind

__all__ = ["SandboxPorts", "free_port"]


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
