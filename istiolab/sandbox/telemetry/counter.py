"""From the access logs to the metrics: follow the files, read the workloads, count each line.

One thread does it all, every POLL_INTERVAL: reread the workloads file if the control plane
replaced it, then hand every new access log line to RequestMetrics. Envoy flushes its access
logs every 100 ms in the sandbox (envoy/binary.py), so a request shows in the metrics within
a few hundred milliseconds.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from .access_log import LOG_SUFFIX, parse_entry
from .follower import LogFollower
from .metrics import RequestMetrics
from .workloads import WorkloadIndex, read_workloads

POLL_INTERVAL = 0.1  # seconds between two looks at the log files


class AccessLogCounter:
    """Counts the requests in every `*.jsonl` access log in `directory` into `metrics`."""

    def __init__(self, directory: Path, workloads_path: Path, metrics: RequestMetrics) -> None:
        self.directory = Path(directory)
        self.workloads_path = Path(workloads_path)
        self.metrics = metrics
        self.workloads = WorkloadIndex()
        self._workloads_stamp: tuple[int, int, int] | None = None
        self.workloads_error = ""
        self.follower = LogFollower(self.directory, self._count, suffix=LOG_SUFFIX)
        self.lines = 0
        self.invalid_lines = 0
        self.last_invalid = ""
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """One round: the workloads file if it changed, then every new line. Returns the lines."""
        self._reload_workloads()
        return self.follower.poll()

    def _count(self, name: str, line: bytes) -> None:
        self.lines += 1
        try:
            entry = parse_entry(line)
        except ValueError as error:
            self.invalid_lines += 1
            self.last_invalid = f"{name}: {error}"
            return
        self.metrics.record(entry, self.workloads)

    def _reload_workloads(self) -> None:
        try:
            stat = os.stat(self.workloads_path)
        except FileNotFoundError:
            return  # not written yet: every workload is "unknown" until it is
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._workloads_stamp:
            return
        self._workloads_stamp = stamp
        try:
            newer = read_workloads(self.workloads_path)
        except (OSError, ValueError) as error:
            self.workloads_error = str(error)
            print(f"telemetry: ignoring the workloads file: {error}", file=sys.stderr)
            return
        self.workloads_error = ""
        self.workloads = self.workloads.merged(newer)
        self.metrics.workloads_changed()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="access-logs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self.poll()
            self._stopped.wait(POLL_INTERVAL)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "lines": self.lines,
            "invalid_lines": self.invalid_lines,
            "last_invalid_line": self.last_invalid,
            "restarted_files": self.follower.restarts,
            "proxies_known": len(self.workloads.by_proxy),
            "workloads_error": self.workloads_error,
        }
