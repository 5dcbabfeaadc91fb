"""Recognising a process again: its pid, its start time and its command line.

A pid alone names nobody for long: once a process has exited and been reaped, the kernel gives
its pid to a later process. So the supervisor remembers, for each process it started, the pid
AND the start time AND the command line, and signals a pid only while all three still match.
A recycled pid has a later start time; a zombie (exited, not yet reaped) counts as gone.

Linux (the supported host for adoption): /proc/<pid>/stat field 22 is the start time in clock
ticks since boot, /proc/<pid>/cmdline the command line. A process-group or session id stays
taken while any process in that group or session lives, which `members` relies on.

Elsewhere (macOS) this is best effort: `ps -o stat=,pgid=,lstart=` (start time to the second)
and `ps -o command=` (the arguments joined by spaces), and `members` finds nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HAS_PROC = sys.platform.startswith("linux") and os.path.isdir("/proc/self")
_GONE = ("Z", "X", "x")  # zombie, dead


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_time: str  # clock ticks since boot on Linux; `ps` lstart text elsewhere
    cmdline: tuple[str, ...]
    group: int | None = None  # process group id
    session: int | None = None  # session id (Linux only)


def identify(pid: int) -> ProcessIdentity | None:
    """Who runs as `pid` now; None if nobody does or it has exited (a zombie)."""
    if pid <= 0:
        return None
    if not HAS_PROC:
        return _identify_with_ps(pid)
    first = _stat(pid)
    if first is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    again = _stat(pid)  # the same process throughout, not a successor that took the pid
    if again is None or again.start_time != first.start_time:
        return None
    cmdline = tuple(os.fsdecode(arg) for arg in raw.split(b"\0"))
    if cmdline and cmdline[-1] == "":
        cmdline = cmdline[:-1]
    return ProcessIdentity(pid, first.start_time, cmdline, first.group, first.session)


def cmdline_matches(
    observed: Sequence[str], argv: Sequence[str], known: Sequence[str] = ()
) -> bool:
    """True if a process showing `observed` was started with `argv`.

    `known` is a command line seen earlier for the same process. A script's interpreter (its #!
    line) or a wrapper that exec()s the real program (the envoy wheel's `envoy` does) changes the
    program part of the command line, never the arguments after it, so those are compared then.
    """
    observed, argv, known = tuple(observed), tuple(argv), tuple(known)
    if not observed or not argv:
        return False
    if observed in (argv, known):
        return True
    if not HAS_PROC:  # `ps -o command=` joins the arguments with spaces
        joined = " ".join(observed)
        return joined == " ".join(argv) or (
            len(argv) > 1 and joined.endswith(" " + " ".join(argv[1:]))
        )
    args = argv[1:]
    if not args or len(observed) not in (len(argv), len(argv) + 1):
        return False
    program = observed[len(observed) - len(args) - 1]
    return observed[-len(args) :] == args and Path(program).name == Path(argv[0]).name


def boot_ticks() -> int | None:
    """Now, on the clock of /proc's start times (Linux); None elsewhere."""
    if not HAS_PROC:
        return None
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def members(
    *,
    group: int | None = None,
    session: int | None = None,
    started_no_later_than: int | None = None,
) -> list[ProcessIdentity]:
    """Live processes in a process group and/or session (Linux; [] elsewhere)."""
    if not HAS_PROC:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        seen = _stat(int(entry.name))
        if seen is None:
            continue
        if group is not None and seen.group != group:
            continue
        if session is not None and seen.session != session:
            continue
        if started_no_later_than is not None and int(seen.start_time) > started_no_later_than:
            continue
        found.append(seen)
    return found


def _stat(pid: int) -> ProcessIdentity | None:
    """/proc/<pid>/stat as an identity without the command line; None if gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ... starttime ...": comm may hold spaces and ")".
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in _GONE:
        return None
    # fields[0] is field 3 of proc(5); field N is fields[N - 3].
    return ProcessIdentity(
        pid, start_time=fields[19], cmdline=(), group=int(fields[2]), session=int(fields[3])
    )


def _identify_with_ps(pid: int) -> ProcessIdentity | None:
    def ps(*columns: str) -> str:
        try:
            done = subprocess.run(
                ["ps", *(f"-o{column}=" for column in columns), "-p", str(pid)],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    parts = ps("stat", "pgid", "lstart").split(None, 2)
    if len(parts) < 3 or parts[0].startswith("Z"):
        return None
    command = ps("command")
    if not command:
        return None
    return ProcessIdentity(pid, parts[2], (command,), group=int(parts[1]))
