"""Durations as Istio accepts them ("500ms", "3m", "1h30m") written the way Envoy requires ("0.5s").

Istio's CRDs take Go-style durations: a sequence of decimal numbers, each with a unit (ns, us or
µs, ms, s, m, h), like `1h30m` or `1.5s`. Envoy's JSON and YAML take only seconds with a single
trailing "s" (`180s`, `0.025s`) and reject `3m` with "duration must end with a single 's'".
Every duration the translator writes goes through `envoy_duration`.
"""

from __future__ import annotations

import re
from decimal import Decimal

NANOS_PER_SECOND = 1_000_000_000

_NANOS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN, as Go accepts
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU, as Go accepts
    "ms": 1_000_000,
    "s": NANOS_PER_SECOND,
    "m": 60 * NANOS_PER_SECOND,
    "h": 3600 * NANOS_PER_SECOND,
}
# The longest units first, so "ms" is not read as "m" followed by "s".
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def nanoseconds(value: str) -> int:
    """The length of an Istio duration in nanoseconds; ValueError if it is not one.

    Negative durations are refused: no Istio field that takes a duration accepts one.
    """
    text = str(value).strip()
    if text == "0":
        return 0
    total = Decimal(0)
    position = 0
    while position < len(text):
        part = _PART.match(text, position)
        if part is None:
            break
        total += Decimal(part.group(1)) * _NANOS_PER_UNIT[part.group(2)]
        position = part.end()
    if not text or position != len(text):
        raise ValueError(
            f"not a duration: {value!r} (expected a number and a unit, like 500ms, 3s, 1m or 1h)"
        )
    return int(total)


def envoy_duration(value: str) -> str:
    """An Istio duration as Envoy writes it: whole seconds "180s", or a fraction "0.5s"."""
    seconds, nanos = divmod(nanoseconds(value), NANOS_PER_SECOND)
    if nanos == 0:
        return f"{seconds}s"
    return f"{seconds}.{nanos:09d}".rstrip("0") + "s"
