"""The supervisor's record of one process: its state, its running handle, its saved form.

An Entry lives in the Supervisor's table (guarded by its lock) for as long as the process is
managed, across restarts. `to_record` is its line in processes.json; `from_record` turns such a
line back into an Entry when a new control plane starts, adopting the process if it still runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import logs, probes
from .handles import AdoptedHandle, Handle
from .spec import (
    BACKOFF,
    CRASHED,
    RUNNING,
    STARTING,
    STOPPED,
    ProcessSpec,
    ProcessStatus,
    describe_exit,
)


@dataclass
class Entry:
    spec: ProcessSpec
    log_path: Path
    state: str = STOPPED
    handle: Handle | None = None  # while a process runs
    restarts: int = 0
    started_at: float | None = None  # time.time() of its latest start
    last_exit: int | None = None
    backoff: float = 0.0  # the delay before the pending (or latest) restart
    restart_due: float | None = None  # time.monotonic() of the pending restart
    ready: bool = False
    next_probe: float = 0.0  # time.monotonic() of the next readiness probe
    stopping: bool = False  # a stop is in progress: the monitor keeps its hands off

    @property
    def name(self) -> str:
        return self.spec.name

    def status(self) -> ProcessStatus:
        handle = self.handle
        restart_in = None
        if self.state == BACKOFF and self.restart_due is not None:
            restart_in = max(0.0, self.restart_due - time.monotonic())
        return ProcessStatus(
            name=self.name,
            pid=handle.pid if handle else None,
            state=self.state,
            restarts=self.restarts,
            started_at=self.started_at,
            last_exit=self.last_exit,
            ready=self.ready,
            kind=self.spec.kind,
            adopted=bool(handle and handle.adopted),
            backoff=self.backoff,
            restart_in=restart_in,
            ports=tuple(self.spec.ports),
            log_path=self.log_path,
        )

    def why_not_ready(self) -> str:
        """Why it is not ready, in a sentence for the learner."""
        last = describe_exit(self.last_exit)
        if self.state == STOPPED:
            return f"it is stopped (last: {last})"
        if self.state == CRASHED:
            return f"it {last} and is not restarted"
        if self.state == BACKOFF:
            return (
                f"it keeps exiting (it was restarted {self.restarts} times, last {last}; "
                f"next try in {self.backoff:g} s)"
            )
        pid = self.handle.pid if self.handle else "?"
        why = f"it runs (pid {pid}) but {probes.describe(self.spec.ready)} does not answer"
        if self.restarts:
            why += f"; it was restarted {self.restarts} times, last {last}"
        return why

    def to_record(self) -> dict[str, Any]:
        handle = self.handle
        return {
            "name": self.name,
            "state": self.state,
            "pid": handle.pid if handle else None,
            "start_time": handle.start_time if handle else None,  # /proc/<pid>/stat field 22
            "cmdline": list(handle.cmdline) if handle else [],
            "adopted": handle.adopted if handle else False,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "last_exit": self.last_exit,
            "backoff": self.backoff,
            "spec": self.spec.to_record(),
        }

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], spec: ProcessSpec, log_path: Path, *, resume: bool
    ) -> Entry:
        """The entry a previous control plane saved, adopting its process if it still runs.

        A process that should run but does not (it died while no control plane watched, or
        was waiting for its restart) is due for a restart at once if `resume`, else stopped.
        """
        entry = cls(
            spec=spec,
            log_path=log_path,
            restarts=int(record.get("restarts", 0)),
            started_at=record.get("started_at"),
            last_exit=record.get("last_exit"),
            backoff=float(record.get("backoff", 0.0)),
        )
        state = record.get("state", STOPPED)
        pid = record.get("pid")
        if state not in (STARTING, RUNNING, BACKOFF):
            entry.state = CRASHED if state == CRASHED else STOPPED
            return entry
        handle = None
        if isinstance(pid, int):
            handle = AdoptedHandle.adopt(
                pid, record.get("start_time"), spec.argv, record.get("cmdline", ())
            )
        if handle is not None:
            entry.handle = handle
            entry.state = state if state in (STARTING, RUNNING) else RUNNING
            entry.ready = spec.ready is None  # with a probe: known after the first one
            logs.note(log_path, f"{spec.name} (pid {pid}) adopted by a new supervisor")
        elif resume and spec.restart:
            entry.state = BACKOFF
            entry.restart_due = time.monotonic()
            logs.note(log_path, f"{spec.name} is not running; restarting it")
        else:
            entry.state = STOPPED
        return entry
