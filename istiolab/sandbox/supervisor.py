"""The sandbox's process supervisor: the kubelet's part, for local processes.

The control plane runs every Bookinfo pod as local processes (the app, and its Envoy sidecar if
it has one) plus the Envoy ingress gateway. The Supervisor starts each one from a ProcessSpec,
in its own session (a Ctrl-C in the learner's terminal does not reach it), with its stdout and
stderr appended to its log file; tells when it is ready (its readiness probe); and, from a
monitor thread, restarts it when it exits, waiting longer after each crash like Kubernetes'
CrashLoopBackOff (processes/backoff.py), and counts its restarts as a pod's restartCount.

Its state lives in one directory (the sandbox's state directory, git-ignored): processes.json
and the processes' logs. When the control plane crashes, its processes keep running; the next
Supervisor on the same directory adopts them (same pid, same start time, same command line),
watches them by polling, restarts them when they die, and stops them on `stop_all`. It restarts
at once any process that died while no control plane was watching (resume=True). It never
signals a pid whose process it cannot recognise as one it started (processes/identity.py), and
stops a process with SIGTERM to its whole process group, then SIGKILL after the timeout.

Adopting processes after a control-plane crash is supported on Linux, where /proc gives exact
start times; elsewhere it is best effort (see processes/identity.py).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import IstiolabError
from .processes import logs, probes, records
from .processes.backoff import BackoffPolicy
from .processes.entry import Entry
from .processes.handles import ChildHandle, Handle, wait_until
from .processes.spec import (
    BACKOFF,
    CRASHED,
    RUNNING,
    STARTING,
    STATES,
    STOPPED,
    ProcessSpec,
    ProcessStatus,
    default_log_path,
    describe_exit,
)

__all__ = [
    "BACKOFF",
    "CRASHED",
    "RUNNING",
    "STARTING",
    "STATES",
    "STOPPED",
    "ProcessNotReady",
    "ProcessSpec",
    "ProcessStatus",
    "Supervisor",
    "SupervisorError",
    "describe_exit",
]

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # SIGTERM to SIGKILL; gunicorn's graceful_timeout is 10 s as well
KILL_TIMEOUT = 5.0  # after SIGKILL, how long a process may take to be gone
READY_TIMEOUT = 30.0
LOG_MAX_BYTES = 2 * 1024 * 1024
LOG_TAIL_LINES = 20

# Processes of supervisors closed without stopping them (an in-process stand-in for a crashed
# control plane, as the tests do). Kept referenced so that Python does not warn about them, and
# reaped once they exit, as init reaps the orphans of a control plane that really crashed.
_LEFT_RUNNING: list[subprocess.Popen[bytes]] = []
_LEFT_RUNNING_LOCK = threading.Lock()


class SupervisorError(IstiolabError):
    """A process could not be started, stopped or found, or the state directory is busy."""


class ProcessNotReady(SupervisorError):
    """A process did not become ready; the message carries the end of its log."""

    def __init__(self, name: str, message: str, log_tail: list[str], log_path: Path) -> None:
        shown = "\n    ".join(log_tail) if log_tail else "(empty)"
        super().__init__(
            f"{message}\n  last lines of {log_path}:\n    {shown}",
            fix=f"read the whole log: {log_path}",
        )
        self.name = name
        self.log_tail = log_tail
        self.log_path = log_path


class Supervisor:
    """Starts, watches, restarts and stops the sandbox's processes; see the module docstring.

    Times are in seconds. A process is probed every `poll_interval` until it is ready, then
    every `probe_period` (Kubernetes' default periodSeconds), so that probes do not flood the
    access logs. Short back-off and poll settings are for tests.

    `resume=False` loads the state without restarting what died while no supervisor watched:
    for `istiolab down` with no control plane running, `Supervisor(state_dir, resume=False)`
    then `close()` stops everything it recorded.
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        resume: bool = True,
        backoff_initial: float = 0.5,
        backoff_cap: float = 30.0,
        backoff_reset: float = 60.0,
        poll_interval: float = 0.1,
        probe_period: float = 10.0,
        probe_timeout: float = 1.0,
        log_max_bytes: int = LOG_MAX_BYTES,
        kill_timeout: float = KILL_TIMEOUT,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.backoff = BackoffPolicy(backoff_initial, backoff_cap, backoff_reset)
        self.poll_interval = poll_interval
        self.probe_period = probe_period
        self.probe_timeout = probe_timeout
        self.log_max_bytes = log_max_bytes
        self.kill_timeout = kill_timeout
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._closed = False
        self._closing = threading.Event()

        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = records.try_lock(self.state_dir)
        if lock is None:
            raise SupervisorError(
                f"another istiolab control plane is managing {self.state_dir}",
                fix="stop it first (istiolab down), or use it instead of starting a second one",
            )
        self._lock_descriptor = lock
        try:
            self._load(resume)
            self._save()
        except BaseException:
            records.unlock(lock)
            raise
        self._monitor = threading.Thread(
            target=self._run_monitor, name="istiolab-supervisor", daemon=True
        )
        self._monitor.start()

    # ---- public API ---------------------------------------------------------------------

    def start(self, spec: ProcessSpec, *, replace: bool = False) -> ProcessStatus:
        """Start a process, or keep it if the same one already runs (adopted ones included).

        If a different process runs under the same name, raise SupervisorError, or with
        replace=True stop it and start `spec`. A requested start is a fresh start: it does not
        count as a restart and resets the back-off.
        """
        with self._lock:
            self._check_open()
            entry = self._entries.get(spec.name)
            handle = entry.handle if entry is not None and not entry.stopping else None
            if entry is not None and handle is not None:
                if entry.spec.same_process(spec):
                    entry.spec = spec  # its probe, kind or ports may have changed
                    self._save()
                    return entry.status()
                if not replace:
                    raise SupervisorError(
                        f"{spec.name} is already running a different command (pid {handle.pid})",
                        fix="stop it first, or start it with replace=True",
                    )
        if handle is not None:
            self.stop(spec.name)
        with self._lock:
            self._check_open()
            entry = self._entries.get(spec.name)
            if entry is None:
                entry = Entry(spec=spec, log_path=self._log_path(spec))
                self._entries[spec.name] = entry
            elif entry.handle is not None or entry.stopping:
                raise SupervisorError(f"{spec.name} is being started or stopped by another call")
            entry.spec = spec
            entry.backoff = 0.0
            self._launch_or_raise(entry)
            return entry.status()

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> ProcessStatus:
        """Stop one process: SIGTERM to its process group, SIGKILL after `timeout`."""
        self._stop([name], timeout)
        with self._lock:
            return self._entry(name).status()

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every managed process (in parallel), adopted ones included."""
        with self._lock:
            names = list(self._entries)
        self._stop(names, timeout)

    def restart(self, name: str, timeout: float = STOP_TIMEOUT) -> ProcessStatus:
        """Stop a process and start it again (a requested restart: not counted, no back-off)."""
        with self._lock:
            self._check_open()
            self._entry(name)
        self._stop([name], timeout)
        with self._lock:
            entry = self._entry(name)
            entry.backoff = 0.0
            self._launch_or_raise(entry)
            return entry.status()

    def remove(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """Stop a process and forget it (its Deployment was deleted)."""
        self._stop([name], timeout)
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.handle is None:
                del self._entries[name]
                self._save()

    def status(self) -> list[ProcessStatus]:
        with self._lock:
            return [entry.status() for entry in self._entries.values()]

    def status_of(self, name: str) -> ProcessStatus:
        with self._lock:
            return self._entry(name).status()

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> list[str]:
        with self._lock:
            path = self._entry(name).log_path
        return logs.tail(path, lines)

    def wait_ready(
        self, names: Iterable[str] | None = None, timeout: float = READY_TIMEOUT
    ) -> None:
        """Wait until the named processes (default: all not stopped) pass their probes.

        Raise ProcessNotReady, naming the process and quoting the end of its log, at the
        deadline, or at once when one has exited for good (stopped, crashed). A process in
        back-off is waited for: it may come up after its next restart.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if names is None:
                pending = [n for n, e in self._entries.items() if e.state != STOPPED]
            else:
                pending = list(dict.fromkeys(names))
                for name in pending:
                    self._entry(name)
        while True:
            to_probe = []
            with self._lock:
                for name in pending:
                    entry = self._entries.get(name)
                    if entry is None:
                        raise SupervisorError(f"{name} was removed while waiting for it")
                    if entry.state in (STOPPED, CRASHED) and not entry.stopping:
                        raise self._not_ready(entry, entry.why_not_ready())
                    if entry.handle is not None and not entry.stopping:
                        to_probe.append((entry, entry.handle))
            for entry, handle in to_probe:
                remaining = max(0.05, deadline - time.monotonic())
                passed = probes.check(entry.spec.ready, min(self.probe_timeout, remaining))
                # Passed, and still alive: not another process that answers on its port.
                if passed and not handle.exited():
                    with self._lock:
                        self._record_probe(entry, handle, passed=True)
                    pending.remove(entry.spec.name)
            if not pending:
                return
            if time.monotonic() >= deadline:
                with self._lock:
                    entry = self._entry(pending[0])
                    why = entry.why_not_ready()
                raise self._not_ready(
                    entry, f"{entry.spec.name} is not ready after {timeout:g} s: {why}"
                )
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def close(self, stop_processes: bool = True, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the monitor and release the state directory; first stop_all() unless told not.

        close(stop_processes=False) leaves the processes running and recorded in
        processes.json, as a crashed control plane would: the next Supervisor adopts them.
        """
        if self._closed:
            return
        try:
            if stop_processes:
                self.stop_all(timeout)
        finally:
            self._closing.set()
            self._monitor.join()
            with self._lock:
                self._closed = True
                self._save()
                running = [
                    entry.handle.popen
                    for entry in self._entries.values()
                    if isinstance(entry.handle, ChildHandle)
                ]
            with _LEFT_RUNNING_LOCK:
                _LEFT_RUNNING.extend(running)
            records.unlock(self._lock_descriptor)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(stop_processes=True)

    # ---- starting -----------------------------------------------------------------------

    def _log_path(self, spec: ProcessSpec) -> Path:
        if spec.log_path is None:
            return default_log_path(self.state_dir, spec.name)
        return Path(spec.log_path).resolve()

    def _launch(self, entry: Entry, *, counted: bool) -> None:
        """Start the entry's process now (under the lock). Raises OSError if it cannot start."""
        spec = entry.spec
        entry.log_path = self._log_path(spec)
        environment = {**os.environ, **(spec.env or {})} if spec.inherit_env else spec.env
        again = f" (restart {entry.restarts + 1})" if counted else ""
        logs.note(entry.log_path, f"starting {spec.name}{again}: {shlex.join(spec.argv)}")
        output = logs.open_for_child(entry.log_path)
        try:
            popen = subprocess.Popen(
                list(spec.argv),
                env=environment,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the learner's terminal does not reach it
            )
        except OSError as exc:
            logs.note(entry.log_path, f"cannot start {spec.name}: {exc}")
            raise
        finally:
            output.close()
        if counted:
            entry.restarts += 1
        entry.handle = ChildHandle(popen)
        entry.started_at = time.time()
        entry.restart_due = None
        entry.ready = spec.ready is None  # no probe: ready once running
        entry.state = RUNNING if entry.ready else STARTING
        entry.next_probe = 0.0
        self._save()

    def _launch_or_raise(self, entry: Entry) -> None:
        try:
            self._launch(entry, counted=False)
        except OSError as exc:
            entry.state = CRASHED
            entry.last_exit = None
            self._save()
            raise SupervisorError(
                f"cannot start {entry.spec.name}: {exc}",
                fix=f"check its command: {shlex.join(entry.spec.argv)}",
            ) from None

    # ---- watching -----------------------------------------------------------------------

    def _run_monitor(self) -> None:
        while not self._closing.wait(self.poll_interval):
            try:
                self._tick()
            except Exception:  # a bug here must not end the watching
                log.exception("istiolab supervisor: the monitor hit an unexpected error")

    def _tick(self) -> None:
        now = time.monotonic()
        to_probe = []
        with self._lock:
            for entry in self._entries.values():
                if entry.stopping:
                    continue
                if entry.handle is not None:
                    if entry.handle.exited():
                        handle = entry.handle
                        self._exited(entry, handle.reap(), f"(pid {handle.pid}) ")
                    elif entry.spec.ready is not None and now >= entry.next_probe:
                        to_probe.append((entry, entry.handle))
                elif entry.state == BACKOFF and now >= (entry.restart_due or float("inf")):
                    self._restart_after_crash(entry)
            log_paths = {entry.log_path for entry in self._entries.values()}
        for path in log_paths:
            logs.cap(path, self.log_max_bytes)
        for entry, handle in to_probe:
            passed = probes.check(entry.spec.ready, self.probe_timeout)
            with self._lock:
                self._record_probe(entry, handle, passed)
        _reap_left_running()

    def _restart_after_crash(self, entry: Entry) -> None:
        try:
            self._launch(entry, counted=True)
        except OSError as exc:
            entry.started_at = time.time()
            self._exited(entry, None, "", reason=f"could not start: {exc}")

    def _exited(self, entry: Entry, status: int | None, pid_text: str, reason: str = "") -> None:
        """The entry's process exited on its own (under the lock): back-off, or crashed."""
        ran_for = max(0.0, time.time() - (entry.started_at or time.time()))
        entry.handle = None
        entry.ready = False
        entry.last_exit = status
        what = reason or describe_exit(status)
        name = entry.spec.name
        if entry.spec.restart:
            entry.backoff = self.backoff.next_delay(entry.backoff, ran_for)
            entry.restart_due = time.monotonic() + entry.backoff
            entry.state = BACKOFF
            logs.note(
                entry.log_path,
                f"{name} {pid_text}{what}; restarting in {entry.backoff:g} s (back-off)",
            )
        else:
            entry.state = STOPPED if status == 0 else CRASHED
            logs.note(entry.log_path, f"{name} {pid_text}{what}; not restarted (restart=False)")
        self._save()

    def _record_probe(self, entry: Entry, handle: Handle, passed: bool) -> None:
        """Note a probe's result (under the lock), if it is about the entry's current process."""
        if entry.handle is not handle or entry.stopping:
            return
        now = time.monotonic()
        entry.ready = passed
        entry.next_probe = now + (self.probe_period if passed else self.poll_interval)
        if passed and entry.state == STARTING:
            entry.state = RUNNING
            handle.refresh()  # its command line once started: what adoption will compare
            self._save()

    # ---- stopping -----------------------------------------------------------------------

    def _stop(self, names: list[str], timeout: float) -> None:
        with self._lock:
            self._check_open()  # a closed supervisor's processes may be another's by now
            entries = [self._entry(name) for name in names]
            stopping: list[tuple[Entry, Handle]] = []
            for entry in entries:
                entry.stopping = True
                entry.restart_due = None
                if entry.handle is not None:
                    stopping.append((entry, entry.handle))
        statuses: dict[str, int | None] = {}
        survivors: list[tuple[Entry, Handle]] = []
        try:
            for _, handle in stopping:
                handle.signal(signal.SIGTERM)
            _wait_exited([handle for _, handle in stopping], timeout)
            for _, handle in stopping:
                if not handle.exited():
                    handle.signal(signal.SIGKILL)
            _wait_exited([handle for _, handle in stopping], self.kill_timeout)
            for entry, handle in stopping:
                if handle.exited():
                    statuses[entry.spec.name] = handle.reap()
                else:
                    survivors.append((entry, handle))
        finally:
            with self._lock:
                for entry in entries:
                    entry.stopping = False
                    if entry.handle is not None and entry.spec.name not in statuses:
                        continue  # still running: not stopped
                    if entry.handle is not None:
                        status = statuses[entry.spec.name]
                        entry.last_exit = status
                        logs.note(
                            entry.log_path,
                            f"stopped {entry.spec.name} (pid {entry.handle.pid}): "
                            f"{describe_exit(status)}",
                        )
                    entry.handle = None
                    entry.ready = False
                    entry.state = STOPPED
                    entry.backoff = 0.0
                self._save()
        if survivors:
            listed = ", ".join(f"{e.spec.name} (pid {h.pid})" for e, h in survivors)
            raise SupervisorError(
                f"still running after SIGKILL: {listed}",
                fix="look at it with `ps -o pid,stat,wchan -p PID` (state D: stuck in the kernel)",
            )

    # ---- state --------------------------------------------------------------------------

    def _load(self, resume: bool) -> None:
        try:
            saved = records.load(self.state_dir)
            specs = [ProcessSpec.from_record(record["spec"]) for record in saved]
        except (records.StateFileError, KeyError, TypeError, ValueError) as exc:
            raise SupervisorError(
                f"cannot read the sandbox's process list: {exc}",
                fix=f"stop any sandbox processes by hand, then delete "
                f"{self.state_dir / records.STATE_FILE}",
            ) from None
        for record, spec in zip(saved, specs, strict=True):
            self._entries[spec.name] = Entry.from_record(
                record, spec, self._log_path(spec), resume=resume
            )

    def _save(self) -> None:
        processes = [entry.to_record() for entry in self._entries.values()]
        try:
            records.save(self.state_dir, processes)
        except OSError as exc:
            log.error("istiolab supervisor: cannot save %s: %s", records.STATE_FILE, exc)

    # ---- helpers ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SupervisorError("this supervisor is closed")

    def _entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise SupervisorError(f"no process named {name!r} is managed here") from None

    def _not_ready(self, entry: Entry, message: str) -> ProcessNotReady:
        if not message.startswith(entry.spec.name):
            message = f"{entry.spec.name} is not ready: {message}"
        return ProcessNotReady(
            entry.spec.name, message, logs.tail(entry.log_path, LOG_TAIL_LINES), entry.log_path
        )


def _wait_exited(handles: list[Handle], timeout: float) -> bool:
    return wait_until(lambda: all(handle.exited() for handle in handles), timeout)


def _reap_left_running() -> None:
    with _LEFT_RUNNING_LOCK:
        _LEFT_RUNNING[:] = [popen for popen in _LEFT_RUNNING if popen.poll() is None]
