"""Following every access log in a directory, like `tail -F` on each of them.

Proxies come and go: a new pod's sidecar creates its log file when it starts, and a restarted
pod's log may be a new file (recreated) or the same one cut short (truncated). On each poll the
follower lists the directory, reads whatever was appended to each file since the last poll, and
starts a file over from its beginning when it is not the file it was reading any more: another
inode, a size smaller than what was read, or a different first line.

A line is handed over only once it is complete (ends with a newline): Envoy may flush half a
line, and the rest comes with the next poll. Every file is read from its start when the process
starts, so the counts survive a restart of the telemetry process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

READ_LIMIT = 8 * 1024 * 1024  # bytes read from one file per poll, so one huge file cannot stall
HEAD_SIZE = 256  # bytes that identify a file: its beginning, checked on every poll


@dataclass
class _Followed:
    inode: int
    offset: int = 0
    partial: bytes = b""  # the start of a line not yet complete
    head: bytes = b""  # the file's first bytes, once read


class LogFollower:
    """Hands every complete line of the `*<suffix>` files in `directory` to `on_line`, once."""

    def __init__(
        self,
        directory: Path,
        on_line: Callable[[str, bytes], None],
        *,
        suffix: str = ".jsonl",
    ) -> None:
        self.directory = Path(directory)
        self.on_line = on_line
        self.suffix = suffix
        self._files: dict[str, _Followed] = {}
        self.restarts = 0  # files started over (recreated or truncated)

    def poll(self) -> int:
        """Read what is new in every file; return the number of lines handed over."""
        try:
            entries = sorted(
                (
                    entry
                    for entry in os.scandir(self.directory)
                    if entry.name.endswith(self.suffix) and entry.is_file()
                ),
                key=lambda entry: entry.name,
            )
        except FileNotFoundError:
            return 0
        seen = set()
        lines = 0
        for entry in entries:
            seen.add(entry.name)
            lines += self._read(entry.name, Path(entry.path))
        for gone in set(self._files) - seen:
            del self._files[gone]  # deleted: if it comes back, it is a new file
        return lines

    def _read(self, name: str, path: Path) -> int:
        try:
            with path.open("rb") as file:
                stat = os.fstat(file.fileno())
                followed = self._files.get(name)
                if followed is None:
                    followed = self._files[name] = _Followed(stat.st_ino)
                elif self._replaced(followed, stat, file):
                    self.restarts += 1
                    followed = self._files[name] = _Followed(stat.st_ino)
                if stat.st_size <= followed.offset:
                    return 0
                file.seek(followed.offset)
                data = file.read(READ_LIMIT)
        except FileNotFoundError:
            return 0
        if followed.offset == 0:
            followed.head = data[:HEAD_SIZE]
        elif len(followed.head) < HEAD_SIZE:
            followed.head = (followed.head + data)[:HEAD_SIZE]
        followed.offset += len(data)
        *complete, followed.partial = (followed.partial + data).split(b"\n")
        handed = 0
        for line in complete:
            if line.strip():
                self.on_line(name, line)
                handed += 1
        return handed

    @staticmethod
    def _replaced(followed: _Followed, stat: os.stat_result, file: BinaryIO) -> bool:
        if stat.st_ino != followed.inode or stat.st_size < followed.offset:
            return True
        if not followed.head:
            return False
        file.seek(0)
        return file.read(len(followed.head)) != followed.head
