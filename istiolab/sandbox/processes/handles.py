"""One supervised process while it runs: a child of this control plane, or an adopted one.

Every process is started in its own session (start_new_session=True), so its pid is also its
process-group and session id: a Ctrl-C in the learner's terminal does not reach it, and a signal
to the group reaches the helpers it started (gunicorn's worker, for one).

ChildHandle wraps the subprocess.Popen of a process this control plane started. It learns that
the process exited without reaping it (waitid with WNOWAIT), so while the exited process is a
zombie its ids cannot be given to anyone else, and what is left of its session can be killed
without any doubt about whose it is. Then it reaps it, and has its exit status.

AdoptedHandle is a process an earlier control plane started. It is not our child, so it is
watched by polling: it has exited when its pid is gone or now belongs to a process with another
start time or command line (see identity.py). It is signalled only after that check, and its
exit status is unknown (its parent, now init, collected it).

Both offer the same four things: exited(), signal(), reap() and refresh().
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from .identity import ProcessIdentity, boot_ticks, cmdline_matches, identify, members

_HAS_WAITID = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")
LEFTOVER_TIMEOUT = 2.0  # how long killed leftovers of a session get to disappear
_POLL = 0.01


class ChildHandle:
    adopted = False

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        seen = identify(self.pid)
        self.start_time = seen.start_time if seen else None
        self.cmdline = seen.cmdline if seen else ()
        self._reaped_elsewhere = False

    def exited(self) -> bool:
        """True once the process has exited (it stays unreaped until reap())."""
        if self.popen.returncode is not None or self._reaped_elsewhere:
            return True
        if not _HAS_WAITID:
            return self.popen.poll() is not None
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.pid, flags) is not None
        except ChildProcessError:  # someone else in this process reaped it
            self._reaped_elsewhere = True
            return True

    def signal(self, signum: int) -> None:
        """Signal its whole process group (the group id is ours until the process is reaped)."""
        if self.popen.returncode is not None or self._reaped_elsewhere:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def reap(self) -> int | None:
        """Kill what is left of its session, reap it, return its exit status. Once exited()."""
        self.signal(signal.SIGKILL)
        _kill_leftovers(self.pid, started_no_later_than=None)  # the zombie holds the session id
        if self._reaped_elsewhere:
            return None
        try:
            return self.popen.wait(timeout=LEFTOVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    def refresh(self) -> None:
        """Note its command line again (a wrapper may have exec()ed the real program)."""
        if not self.exited():
            seen = identify(self.pid)
            if seen is not None and seen.start_time == self.start_time:
                self.cmdline = seen.cmdline


class AdoptedHandle:
    adopted = True

    def __init__(self, seen: ProcessIdentity, argv: Sequence[str], alive_at: int | None) -> None:
        self.pid = seen.pid
        self.start_time: str | None = seen.start_time
        self.cmdline = seen.cmdline
        self._argv = tuple(argv)
        self._known = seen.cmdline
        self._alive_at = alive_at  # boot ticks at which it was last seen running

    @classmethod
    def adopt(
        cls, pid: int, start_time: str | None, argv: Sequence[str], known: Sequence[str]
    ) -> AdoptedHandle | None:
        """The process an earlier control plane recorded, if it still runs; else None."""
        before = boot_ticks()
        seen = identify(pid)
        if (
            seen is None
            or start_time is None
            or seen.start_time != start_time
            or not cmdline_matches(seen.cmdline, argv, known)
            or (seen.group is not None and seen.group != pid)  # not the group we started
        ):
            return None
        return cls(seen, argv, before)

    def _still_ours(self) -> ProcessIdentity | None:
        """The process now, if the pid still belongs to the one adopted; else None."""
        before = boot_ticks()
        seen = identify(self.pid)
        if (
            seen is None
            or seen.start_time != self.start_time
            or not cmdline_matches(seen.cmdline, self._argv, self._known)
        ):
            return None
        self._alive_at = before
        return seen

    def exited(self) -> bool:
        return self._still_ours() is None

    def signal(self, signum: int) -> None:
        """Signal its process group, if the pid still belongs to the process we adopted."""
        if self._still_ours() is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def reap(self) -> int | None:
        """Kill what is left of its session. Its exit status is unknown: None."""
        if self._alive_at is not None:
            # Only processes that started while it still ran: after it is gone, a new process
            # could get its pid and start a session of the same number.
            _kill_leftovers(self.pid, started_no_later_than=self._alive_at)
        return None

    def refresh(self) -> None:
        seen = self._still_ours()
        if seen is not None:
            self.cmdline = seen.cmdline


Handle = ChildHandle | AdoptedHandle


def _kill_leftovers(session: int, started_no_later_than: int | None) -> None:
    """SIGKILL the live processes left in a session whose leader exited, and wait for them."""

    def leftovers() -> list[ProcessIdentity]:
        return members(session=session, started_no_later_than=started_no_later_than)

    for seen in leftovers():
        again = identify(seen.pid)
        if again is not None and again.start_time == seen.start_time:
            with suppress(ProcessLookupError):
                os.kill(seen.pid, signal.SIGKILL)
    wait_until(lambda: not leftovers(), LEFTOVER_TIMEOUT)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = _POLL) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; True if it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))  # poll interval inside a deadline
