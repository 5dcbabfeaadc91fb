"""What the supervisor runs (ProcessSpec) and what it reports about it (ProcessStatus).

A ProcessSpec is to the sandbox what a container is to a pod: a command, its environment, where
its output goes, how to tell it is ready, and whether to restart it when it exits (Kubernetes'
restartPolicy Always). Specs are saved in processes.json, so a later control plane can restart a
process it adopted; to_record/from_record are that file's format.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

from .probes import Probe, parse_probe

# The states of a managed process, as `istiolab status` shows them.
STARTING = "starting"  # running, its readiness probe has not passed yet
RUNNING = "running"  # running, and was ready at least once since it started
BACKOFF = "backoff"  # exited on its own; will be started again after a delay
STOPPED = "stopped"  # stopped on request (or exited with status 0 and is not restarted)
CRASHED = "crashed"  # exited on its own and is not restarted (restart=False, or it cannot start)
STATES = (STARTING, RUNNING, BACKOFF, STOPPED, CRASHED)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class ProcessSpec:
    """One process to supervise.

    `env` is added to the control plane's own environment (inherit_env=True) or is the whole
    environment (inherit_env=False). `log_path` receives stdout and stderr; by default
    <state_dir>/logs/<name>.log. `ready` is ("tcp", port) or ("http", url); without it a process
    is ready as soon as it runs. `ports` are the ports it listens on, for `status` to show.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    _: KW_ONLY
    cwd: str | Path | None = None
    log_path: str | Path | None = None
    ready: Probe | None = None
    kind: str = "app"  # "app", "proxy", "gateway", ...: shown by status, not interpreted
    ports: Sequence[int] = ()
    restart: bool = True
    inherit_env: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"process name {self.name!r}: use letters, digits, '.', '_' and '-' "
                "(it names the log file)"
            )
        if isinstance(self.argv, str) or not self.argv:
            raise ValueError(f"{self.name}: argv must be a non-empty list of arguments")
        if not self.kind:
            raise ValueError(f"{self.name}: kind must not be empty")
        # Normalised copies, so a spec cannot change under the supervisor.
        object.__setattr__(self, "argv", tuple(str(arg) for arg in self.argv))
        object.__setattr__(self, "env", {str(k): str(v) for k, v in (self.env or {}).items()})
        object.__setattr__(self, "cwd", None if self.cwd is None else Path(self.cwd))
        object.__setattr__(self, "log_path", None if self.log_path is None else Path(self.log_path))
        object.__setattr__(self, "ready", parse_probe(self.ready, self.name))
        object.__setattr__(self, "ports", tuple(int(port) for port in self.ports))

    def same_process(self, other: ProcessSpec) -> bool:
        """True if `other` would start the same process (command, environment, directory)."""
        return (
            self.argv == other.argv
            and self.env == other.env
            and self.inherit_env == other.inherit_env
            and self.cwd == other.cwd
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "argv": list(self.argv),
            "env": dict(self.env or {}),
            "inherit_env": self.inherit_env,
            "cwd": None if self.cwd is None else str(self.cwd),
            "log_path": None if self.log_path is None else str(self.log_path),
            "ready": None if self.ready is None else list(self.ready),
            "kind": self.kind,
            "ports": list(self.ports),
            "restart": self.restart,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ProcessSpec:
        ready = record.get("ready")
        return cls(
            record["name"],
            record["argv"],
            record.get("env") or {},
            cwd=record.get("cwd"),
            log_path=record.get("log_path"),
            ready=None if ready is None else tuple(ready),
            kind=record.get("kind", "app"),
            ports=record.get("ports", ()),
            restart=record.get("restart", True),
            inherit_env=record.get("inherit_env", True),
        )


@dataclass(frozen=True)
class ProcessStatus:
    """A snapshot of one managed process."""

    name: str
    pid: int | None  # None while it is not running
    state: str  # one of STATES
    restarts: int  # times it was started again after it exited on its own (restartCount)
    started_at: float | None  # when it last started (seconds since the epoch)
    last_exit: int | None  # its last exit status; negative: killed by that signal; None: unknown
    ready: bool  # its readiness probe passed the last time it was run
    kind: str = "app"
    adopted: bool = False  # started by an earlier control plane and watched by this one
    backoff: float = 0.0  # the delay before the pending (or latest) restart, in seconds
    restart_in: float | None = None  # seconds until the pending restart, in state backoff
    ports: tuple[int, ...] = ()
    log_path: Path | None = None

    @property
    def last_exit_text(self) -> str:
        """How it last exited, or "" if it never did."""
        if self.last_exit is None and self.state not in (BACKOFF, CRASHED):
            return ""
        return describe_exit(self.last_exit)


def describe_exit(status: int | None) -> str:
    """'exited with status 3', 'was killed by SIGKILL', or 'exited (status unknown)'."""
    if status is None:
        return "exited (status unknown)"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def default_log_path(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


__all__ = [
    "BACKOFF",
    "CRASHED",
    "RUNNING",
    "STARTING",
    "STATES",
    "STOPPED",
    "ProcessSpec",
    "ProcessStatus",
    "default_log_path",
    "describe_exit",
]
