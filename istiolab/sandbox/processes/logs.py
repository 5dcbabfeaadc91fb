"""Each supervised process's log file: its stdout and stderr, the supervisor's markers, a size cap.

The process writes to the file itself (its stdout and stderr are the file, opened for appending),
so its output does not pass through the control plane and nothing breaks when the control plane
exits. The supervisor adds one-line markers ("--- istiolab ...") when it starts, restarts, adopts
or stops the process, so the log reads like `kubectl logs` and `--previous` at once.

The cap works like logrotate's copytruncate: when the file grows past `max_bytes`, its last
`max_bytes` (from a line start) are copied to <name>.log.1 and the file is truncated in place. The
process keeps writing to the same open file; because it appends, it writes at the new end. So a
process uses at most about twice `max_bytes` of disk, plus what it writes between two checks.
Output written in the instant between reading the file and truncating it is lost (as with
copytruncate); a process that floods its log can lose a line at each rotation.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

MARKER = "--- istiolab"
_TAIL_READ = 64 * 1024


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def open_for_child(path: Path) -> BinaryIO:
    """The file to give a new process as stdout and stderr (appending; the caller closes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def note(path: Path, text: str) -> None:
    """Append a supervisor marker line to the log."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(f"{MARKER} {stamp} {text}\n")
    except OSError:
        pass  # a log we cannot write must not stop the supervisor


def cap(path: Path, max_bytes: int) -> bool:
    """Keep the log under `max_bytes`; True if it was rotated."""
    try:
        size = path.stat().st_size
        if size <= max_bytes:
            return False
        with path.open("rb") as log:
            log.seek(size - max_bytes)
            kept = log.read()  # to the end as it is now, then truncate at once: what the
            os.truncate(path, 0)  # process writes between the two is lost, so keep it short
        kept = kept[-max_bytes:]
        newline = kept.find(b"\n")
        if 0 <= newline < len(kept) - 1:
            kept = kept[newline + 1 :]  # start at a whole line
        previous = previous_path(path)
        partial = previous.with_name(previous.name + ".tmp")
        partial.write_bytes(kept)
        os.replace(partial, previous)
    except OSError:
        return False
    note(path, f"log reached {max_bytes} bytes; its last part is in {previous.name}")
    return True


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last `lines` lines of the log, reaching into <name>.log.1 if the log is short."""
    if lines <= 0:
        return []
    found: list[str] = []
    for source in (path, previous_path(path)):
        try:
            with source.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - _TAIL_READ))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            continue
        found = text.splitlines()[-(lines - len(found)) :] + found
        if len(found) >= lines:
            break
    return found[-lines:]
