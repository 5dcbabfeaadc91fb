"""Replacing a file so that its readers never see half of it.

Envoy, the telemetry process and a restarted control plane all read files the control plane
rewrites while they run. Each file is written in full to a temporary file in the same directory
(a rename is atomic only within one file system), then renamed over the old one: a reader opens
either the old file or the new one, whole. The temporary name starts with a dot, so no watcher
mistakes it for the real file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRIVATE_MODE = 0o600  # only the owner may read: keys, and files that hold keys
PUBLIC_MODE = 0o644  # anyone may read: certificates


def write_atomically(
    path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_MODE
) -> Path:
    """Write `data` to `path`, replacing it whole. The file gets `mode` before it gets its name,
    so a private key is never readable by others, not even for a moment."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def write_json_atomically(
    path: str | os.PathLike[str], document: Mapping[str, Any], *, mode: int = PRIVATE_MODE
) -> Path:
    """`document` as indented JSON, replacing `path` whole."""
    return write_atomically(path, (json.dumps(document, indent=1) + "\n").encode(), mode=mode)
