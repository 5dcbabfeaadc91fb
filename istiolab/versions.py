"""The course's pinned versions, read from `versions.env` at the repository root.

The shell scripts `source` that file and this module parses it, so both must read it the same way:
only `KEY=value` lines, comments and blank lines. A line bash would read differently (quotes,
spaces, `$` expansion) is rejected with its file and line number instead of being guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType

from bookinfo.variants import find

VERSIONS_FILE = Path(__file__).resolve().parents[1] / "versions.env"

_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
# Characters that mean the same to bash and to this parser in an unquoted assignment.
_VALUE = re.compile(r"[A-Za-z0-9._:/@+=,%-]+")


def load(path: Path | str | None = None) -> dict[str, str]:
    """Every KEY=value pin of the file (versions.env at the repository root by default)."""
    source = Path(path) if path is not None else VERSIONS_FILE
    pins: dict[str, str] = {}
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, equals, value = line.partition("=")
        where = f"{source}:{number}"
        if not equals or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise ValueError(
                f"{where}: expected KEY=value (KEY in capitals, a value without spaces, quotes"
                f" or $), got {line!r}"
            )
        if key in pins:
            raise ValueError(f"{where}: {key} is already set above; each pin appears once")
        pins[key] = value
    return pins


@cache
def pinned() -> Mapping[str, str]:
    """The repository's pins, read once."""
    return MappingProxyType(load())


def get(key: str, pins: Mapping[str, str] | None = None) -> str:
    """One pin, with an error naming the file when it is missing."""
    pins = pinned() if pins is None else pins
    try:
        return pins[key]
    except KeyError:
        raise KeyError(f"{VERSIONS_FILE.name} has no {key}; add a {key}=... line") from None


def bookinfo_image(service: str, version: str, pins: Mapping[str, str] | None = None) -> str:
    """The pinned image of a Bookinfo variant, e.g. istiolab/examples-bookinfo-reviews-v3:0.1.0."""
    target = find(service, version).target  # LookupError for a variant the Dockerfile lacks
    return f"{get('BOOKINFO_IMAGE_PREFIX', pins)}{target}:{get('BOOKINFO_IMAGE_TAG', pins)}"
