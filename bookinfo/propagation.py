"""Which incoming headers a service copies onto the requests it makes, and why.

A service mesh sees every request as it crosses a sidecar, but it cannot see *inside* a service:
when productpage receives a request and then calls reviews, the two requests look unrelated to
Envoy. Tracing joins them into one trace only if the service copies the trace context (x-request-id,
B3 or W3C `traceparent` headers) from the request it received onto the requests it sends. This is
the one change Istio asks of an application's code.

The same copying carries `end-user`, the header Istio's request-routing task matches to send the
user "jason" to reviews v2, and the fault-injection task matches to delay ratings for him only.

The lists below are exactly those of Istio's Bookinfo, service by service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

# Copied verbatim by details and reviews (Istio's Ruby and Java services do the same).
FORWARDED_HEADERS = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "sw8",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)

# productpage copies these verbatim. It handles B3 separately (b3_headers below) and never copies
# an incoming `end-user`: that header comes only from the logged-in session.
PRODUCTPAGE_FORWARDED_HEADERS = tuple(
    name for name in FORWARDED_HEADERS if not name.startswith("x-b3-") and name != "end-user"
)


# The trace context among them: what joins a service's outgoing calls to the request it is
# answering (plus `b3`, the single-header B3 form). A service started with
# PROPAGATE_TRACE_HEADERS=false drops these, and only these, to show what a trace looks like when
# one service forgets them: it falls apart into pieces.
_USER_CONTEXT = ("end-user", "user-agent", "cookie", "authorization", "jwt")
TRACE_CONTEXT_HEADERS = frozenset(
    [*(name for name in FORWARDED_HEADERS if name not in _USER_CONTEXT), "b3"]
)


def forward_headers(
    incoming: Mapping[str, str],
    names: tuple[str, ...] = FORWARDED_HEADERS,
    *,
    trace_context: bool = True,
) -> dict[str, str]:
    """Return the headers from `names` present in `incoming` (a case-insensitive mapping),
    without the trace context when `trace_context` is False."""
    return {
        name: incoming[name]
        for name in names
        if incoming.get(name) is not None and (trace_context or name not in TRACE_CONTEXT_HEADERS)
    }


_TRACE_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
_SAMPLED_VALUES = {"1", "true", "True", "d"}


def b3_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """Re-emit the incoming B3 context as multi headers, like OpenTelemetry's B3MultiFormat.

    Istio's productpage extracts the context and injects it again instead of copying headers, which
    has visible effects a learner may notice in a trace: the single `b3` header becomes the
    `x-b3-*` headers, a 64-bit trace id is padded to 128 bits, `x-b3-sampled` is normalised to
    "1"/"0", and `x-b3-parentspanid`/`x-b3-flags` are dropped. Without a valid trace id and span id
    nothing is sent, and Envoy starts a new trace.
    """
    single = incoming.get("b3")
    if single:
        fields = single.split("-")
        if len(fields) < 2:
            return {}  # a sampling-only "b3: 0" carries no ids to propagate
        trace_id, span_id = fields[0], fields[1]
        sampled = fields[2] if len(fields) > 2 else ""
        flags = ""
    else:
        trace_id = incoming.get("x-b3-traceid", "")
        span_id = incoming.get("x-b3-spanid", "")
        sampled = incoming.get("x-b3-sampled", "")
        flags = incoming.get("x-b3-flags", "")

    if not (_TRACE_ID.fullmatch(trace_id) and _SPAN_ID.fullmatch(span_id)):
        return {}
    trace, span = int(trace_id, 16), int(span_id, 16)
    if trace == 0 or span == 0:
        return {}  # all-zero ids are "invalid" in B3 and OpenTelemetry alike
    return {
        "x-b3-traceid": f"{trace:032x}",
        "x-b3-spanid": f"{span:016x}",
        "x-b3-sampled": "1" if sampled in _SAMPLED_VALUES or flags == "1" else "0",
    }


def productpage_headers(
    incoming: Mapping[str, str], user: str | None, *, trace_context: bool = True
) -> dict[str, str]:
    """The headers productpage sends to details, reviews and ratings."""
    headers = b3_headers(incoming) if trace_context else {}
    headers.update(
        forward_headers(incoming, PRODUCTPAGE_FORWARDED_HEADERS, trace_context=trace_context)
    )
    if user:
        headers["end-user"] = header_value(user)
    return headers


# Printable ASCII, except "%" which marks an escape.
_HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


def header_value(text: str) -> str:
    """Text that can travel in an HTTP header: "jason" unchanged, anything else percent-encoded.

    A user may sign in as "Łukasz" or paste a line break into the form; HTTP headers carry only
    visible ASCII, so those characters are sent as UTF-8 percent escapes instead of breaking
    every call productpage makes.
    """
    return quote(text, safe=_HEADER_SAFE)
