"""The supervisor's state directory: processes.json and supervisor.lock.

processes.json names every process the supervisor manages: its spec, pid, start time and
command line, state and restart count. It is rewritten after every change, atomically (a new
file renamed over the old), so at whatever moment the control plane dies the file is whole and
names every process it had started; the next control plane reads it to adopt them. Only its
owner can read it: it holds the processes' environments.

supervisor.lock is held (flock) by the one live Supervisor of the directory. The kernel drops
the lock when its process exits, however it exits, so a crashed control plane never blocks the
next one, while two live ones never manage the same processes.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "processes.json"
LOCK_FILE = "supervisor.lock"
FORMAT = 1


class StateFileError(ValueError):
    """processes.json exists but cannot be read as one."""


def load(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path} is not valid JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("processes"), list)
        or not all(isinstance(record, dict) for record in data["processes"])
    ):
        raise StateFileError(f"{path} is not a processes file of format {FORMAT}")
    return data["processes"]


def save(state_dir: Path, processes: list[dict[str, Any]]) -> None:
    path = state_dir / STATE_FILE
    partial = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(
            {"format": FORMAT, "supervisor_pid": os.getpid(), "processes": processes}, out, indent=2
        )
        out.write("\n")
    os.replace(partial, path)


def try_lock(state_dir: Path) -> int | None:
    """Take the directory's lock: its file descriptor, or None if a live supervisor holds it."""
    # Python opens files non-inheritable, so no supervised process keeps the lock alive.
    descriptor = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())  # for a human wondering who holds it
    return descriptor


def unlock(descriptor: int) -> None:
    os.close(descriptor)  # closing the last descriptor releases the flock
