"""How each of Istio's original services turned the id in a URL into a number.

The originals were written in Ruby (details), Java (reviews) and JavaScript (ratings), and each
parsed ids the way its language does: details accepts "010" (octal 8) and "1_000", reviews only
plain decimal within 32 bits, ratings reads leading digits and stops ("7abc" is 7). Istio's docs
never depend on the odd cases, but keeping them means our services answer exactly like the images
they replace.

One thing is ours: an id longer than MAX_DIGITS digits is refused like any non-number. Nobody means
such an id, and converting it is slow work an attacker could ask for.
"""

from __future__ import annotations

import re

MAX_DIGITS = 64


def _bounded(digits: str, base: int) -> int | None:
    cleaned = digits.replace("_", "")
    return int(cleaned, base) if len(cleaned) <= MAX_DIGITS else None


# Ruby's Integer(): optional sign, 0x/0b/0o/0d prefixes, a leading 0 meaning octal, single
# underscores between digits, surrounding whitespace. "010" is 8 and "1_000" is 1000.
_RUBY_INTEGER = re.compile(
    r"\s*(?P<sign>[+-]?)(?:"
    r"0[xX](?P<hex>[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*)"
    r"|0[bB](?P<bin>[01]+(?:_[01]+)*)"
    r"|0[dD](?P<dec_prefixed>[0-9]+(?:_[0-9]+)*)"
    r"|0[oO_]?(?P<oct>[0-7]+(?:_[0-7]+)*)"
    r"|(?P<dec>0|[1-9][0-9]*(?:_[0-9]+)*)"
    r")\s*"
)
_RUBY_BASES = {"hex": 16, "bin": 2, "dec_prefixed": 10, "oct": 8, "dec": 10}


def ruby_integer(text: str) -> int | None:
    """Ruby's Integer(text), or None where Ruby would raise."""
    match = _RUBY_INTEGER.fullmatch(text)
    if match is None:
        return None
    group, base = next((g, b) for g, b in _RUBY_BASES.items() if match.group(g) is not None)
    value = _bounded(match.group(group), base)
    if value is None:
        return None
    return -value if match.group("sign") == "-" else value


_JAVA_INT = re.compile(r"[+-]?[0-9]{1,12}")
_INT32 = range(-(2**31), 2**31)


def java_int(text: str) -> int | None:
    """Java's Integer.valueOf(text): an optional sign and decimal digits, within 32 bits."""
    if not _JAVA_INT.fullmatch(text):
        return None
    value = int(text)
    return value if value in _INT32 else None


_JS_WHITESPACE = " \t\n\r\v\f\u00a0\ufeff"
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+")
_DEC_DIGITS = re.compile(r"[0-9]+")


def js_parse_int(text: str) -> int | None:
    """JavaScript's parseInt(text): leading whitespace, sign, digits; stops at the first non-digit.

    "7abc" is 7, "8?x=1" is 8, "0x1A" is 26, "abc", "0x" and "" are NaN (None here).
    """
    rest = text.lstrip(_JS_WHITESPACE)
    sign = -1 if rest.startswith("-") else 1
    rest = rest[1:] if rest[:1] in ("+", "-") else rest
    if rest[:2] in ("0x", "0X"):
        digits, base = _HEX_DIGITS.match(rest, 2), 16
    else:
        digits, base = _DEC_DIGITS.match(rest), 10
    value = None if digits is None else _bounded(digits.group(), base)
    return None if value is None else sign * value
