"""Zipkin's v2 data model and query rules, as pure functions over spans (JSON objects).

A span is one timed operation of one service: Envoy reports one per request and per proxy. With
`shared_span_context: false` (Istio's setting), the caller's sidecar reports a CLIENT span and the
callee's sidecar a SERVER span whose `parentId` is the client span's `id`; all the spans of one
request through the mesh share a `traceId`. What Zipkin does with them, and so what this does:

- normalise: ids are lower-case hex, padded to 16 (or 32 for a 128-bit trace id) digits; service
  and span names are lower case; a parentId equal to the span's own id is dropped.
- merge: a span reported twice (same trace, id and side) is kept once, its tags and annotations
  joined (zipkin2.Span.Builder.merge).
- query (GET /api/v2/traces): a trace matches when its first span started inside
  [endTs - lookback, endTs] and one span of `serviceName` matches `spanName`, `remoteServiceName`
  and the duration bounds; `annotationQuery` ("error and http.method=GET") is checked against
  that service's tags and annotations.
- dependencies: a link parent -> child for each span whose parent belongs to another service,
  counted per call, with an error when either side is tagged `error`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Span = dict[str, Any]

KINDS = ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")
DEFAULT_LIMIT = 10
DEFAULT_LOOKBACK_MS = 86_400_000  # Zipkin's QUERY_LOOKBACK default: one day
_HEX = re.compile(r"[0-9a-f]+")


# Spans in


def parse_spans(body: bytes) -> list[Span]:
    """The spans of a POST /api/v2/spans body; ValueError saying what is wrong otherwise."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise ValueError(f"malformed JSON ({error}): expected a list of Zipkin v2 spans") from None
    if not isinstance(document, list):
        raise ValueError("expected a JSON list of Zipkin v2 spans, got a JSON " + _kind(document))
    return [normalize_span(span, index) for index, span in enumerate(document)]


def normalize_span(raw: Any, index: int = 0) -> Span:
    """One span as Zipkin stores it; ValueError for one it would reject."""
    where = f"span {index}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a JSON object, got a JSON {_kind(raw)}")
    span: Span = {"traceId": _hex_id(raw.get("traceId"), f"{where}: traceId", 32)}
    span["id"] = _hex_id(raw.get("id"), f"{where}: id", 16)
    where = f"span {span['id']}"
    parent = raw.get("parentId")
    if parent not in (None, ""):
        parent_id = _hex_id(parent, f"{where}: parentId", 16)
        if parent_id != span["id"]:
            span["parentId"] = parent_id
    kind = raw.get("kind")
    if kind not in (None, ""):
        if str(kind).upper() not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
        span["kind"] = str(kind).upper()
    if raw.get("name"):
        span["name"] = str(raw["name"]).lower()
    for field in ("timestamp", "duration"):
        value = raw.get(field)
        if value not in (None, 0):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{where}: {field} must be a positive number of microseconds")
            span[field] = int(value)
    for field in ("localEndpoint", "remoteEndpoint"):
        endpoint = raw.get(field)
        if isinstance(endpoint, dict) and endpoint:
            span[field] = _endpoint(endpoint)
    listed = raw.get("annotations") or []
    if not isinstance(listed, list):
        raise ValueError(f"{where}: annotations must be a list")
    annotations = [_annotation(item, where) for item in listed]
    if annotations:
        span["annotations"] = sorted(annotations, key=lambda item: item["timestamp"])
    tags = raw.get("tags")
    if isinstance(tags, dict) and tags:
        if all(type(value) is str for value in tags.values()):
            span["tags"] = tags  # the common case (Envoy's tags are all text): keep it as parsed
        else:
            span["tags"] = {str(key): _tag_text(value) for key, value in tags.items()}
    for flag in ("debug", "shared"):
        if raw.get(flag) is True:
            span[flag] = True
    return span


def span_key(span: Mapping[str, Any]) -> tuple[str, bool]:
    """Which reports are the same span: its id, and for a shared span (B3 single-host, where the
    client and server use one id) which side reported it."""
    return span["id"], bool(span.get("shared"))


def merge_spans(first: Mapping[str, Any], second: Mapping[str, Any]) -> Span:
    """Two reports of one span as one: the first's values, completed by the second's; tags and
    annotations from both."""
    merged: Span = {**second, **first}
    tags = {**first.get("tags", {}), **second.get("tags", {})}
    if tags:
        merged["tags"] = tags
    annotations = {
        (item["timestamp"], item["value"]): item
        for item in (*first.get("annotations", ()), *second.get("annotations", ()))
    }
    if annotations:
        merged["annotations"] = [annotations[key] for key in sorted(annotations)]
    return merged


def service_name(span: Mapping[str, Any]) -> str:
    return str((span.get("localEndpoint") or {}).get("serviceName") or "")


def remote_service_name(span: Mapping[str, Any]) -> str:
    return str((span.get("remoteEndpoint") or {}).get("serviceName") or "")


def trace_timestamp(trace: Sequence[Mapping[str, Any]]) -> int:
    """When a trace started: its earliest span's timestamp (microseconds), 0 when none has one."""
    return min((span["timestamp"] for span in trace if span.get("timestamp")), default=0)


def is_error(span: Mapping[str, Any]) -> bool:
    return "error" in (span.get("tags") or {})


# Queries


@dataclass(frozen=True)
class TraceQuery:
    """GET /api/v2/traces' parameters (times in milliseconds, durations in microseconds)."""

    service_name: str | None = None
    remote_service_name: str | None = None
    span_name: str | None = None
    annotation_query: tuple[tuple[str, str | None], ...] = ()
    min_duration: int | None = None
    max_duration: int | None = None
    end_ts: int = 0  # 0: now
    lookback: int = DEFAULT_LOOKBACK_MS
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> TraceQuery:
        """The query of a request's parameters; ValueError naming the one that is wrong."""
        end_ts = _number(args, "endTs", int(time.time() * 1000))
        return cls(
            service_name=_name(args, "serviceName"),
            remote_service_name=_name(args, "remoteServiceName"),
            span_name=_name(args, "spanName"),
            annotation_query=parse_annotation_query(args.get("annotationQuery") or ""),
            min_duration=_optional_number(args, "minDuration"),
            max_duration=_optional_number(args, "maxDuration"),
            end_ts=end_ts,
            lookback=_number(args, "lookback", DEFAULT_LOOKBACK_MS),
            limit=_number(args, "limit", DEFAULT_LIMIT, minimum=1),
        )

    def in_window(self, timestamp_us: int) -> bool:
        end = self.end_ts or int(time.time() * 1000)
        return timestamp_us != 0 and (end - self.lookback) * 1000 <= timestamp_us <= end * 1000

    def matches(self, trace: Sequence[Mapping[str, Any]]) -> bool:
        if not self.in_window(trace_timestamp(trace)):
            return False
        mine = [
            span
            for span in trace
            if self.service_name is None or service_name(span) == self.service_name
        ]
        if not any(self._span_matches(span) for span in mine):
            return False
        return all(
            any(_has_annotation(span, key, value) for span in mine)
            for key, value in self.annotation_query
        )

    def _span_matches(self, span: Mapping[str, Any]) -> bool:
        if self.span_name is not None and span.get("name") != self.span_name:
            return False
        if (
            self.remote_service_name is not None
            and remote_service_name(span) != self.remote_service_name
        ):
            return False
        duration = span.get("duration")
        if self.min_duration is not None and (duration is None or duration < self.min_duration):
            return False
        return not (
            self.max_duration is not None and (duration is None or duration > self.max_duration)
        )


def parse_annotation_query(text: str) -> tuple[tuple[str, str | None], ...]:
    """ "error and http.method=GET" -> (("error", None), ("http.method", "GET"))."""
    terms = []
    for term in re.split(r"\s+and\s+", text.strip()):
        if term:
            key, equals, value = term.partition("=")
            terms.append((key.strip(), value.strip() if equals else None))
    return tuple(terms)


def _has_annotation(span: Mapping[str, Any], key: str, value: str | None) -> bool:
    tags = span.get("tags") or {}
    if value is not None:
        return tags.get(key) == value
    return key in tags or any(item["value"] == key for item in span.get("annotations") or ())


# Dependencies


def dependency_links(traces: Iterable[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Zipkin's dependency links: parent service -> child service with callCount and
    errorCount, from each span whose parent (in the same trace) belongs to another service.

    With Envoy's spans that is each SERVER span under the caller's CLIENT span (the gateway's
    or a sidecar's). A CLIENT span that names its remote service and has no such child (the
    call never reached a server that reported) links to that remote service.
    """
    counts: dict[tuple[str, str], list[int]] = {}

    def count(parent: str, child: str, error: bool) -> None:
        if parent and child and parent != child:
            link = counts.setdefault((parent, child), [0, 0])
            link[0] += 1
            link[1] += error

    for trace in traces:
        by_id = {span["id"]: span for span in trace}
        has_child = {span.get("parentId") for span in trace}
        for span in trace:
            parent = by_id.get(span.get("parentId", ""))
            if parent is not None:
                count(service_name(parent), service_name(span), is_error(parent) or is_error(span))
            if span.get("kind") == "CLIENT" and span["id"] not in has_child:
                count(service_name(span), remote_service_name(span), is_error(span))
    return [
        {"parent": parent, "child": child, "callCount": calls, "errorCount": errors}
        for (parent, child), (calls, errors) in sorted(counts.items())
    ]


# Helpers


def _hex_id(value: Any, what: str, longest: int) -> str:
    text = str(value or "").lower()
    if not text or len(text) > longest or not _HEX.fullmatch(text):
        raise ValueError(f"{what} must be 1 to {longest} hex digits, not {value!r}")
    width = 16 if len(text) <= 16 else 32
    return text.rjust(width, "0")


def _annotation(item: Any, where: str) -> dict[str, Any]:
    timestamp = item.get("timestamp") if isinstance(item, dict) else None
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or "value" not in item:
        raise ValueError(f"{where}: an annotation needs a timestamp (microseconds) and a value")
    return {"timestamp": int(timestamp), "value": str(item["value"])}


def _endpoint(endpoint: dict[str, Any]) -> dict[str, Any]:
    name = endpoint.get("serviceName")
    if name and (type(name) is not str or not name.islower()):
        return {**endpoint, "serviceName": str(name).lower()}
    return endpoint


def _tag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string"}.get(type(value), type(value).__name__)


def _name(args: Mapping[str, str], key: str) -> str | None:
    value = (args.get(key) or "").strip().lower()
    return value or None


def _number(args: Mapping[str, str], key: str, default: int, *, minimum: int = 0) -> int:
    value = _optional_number(args, key, minimum=minimum)
    return default if value is None else value


def _optional_number(args: Mapping[str, str], key: str, *, minimum: int = 0) -> int | None:
    text = args.get(key)
    if text in (None, ""):
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key} must be a whole number, not {text!r}") from None
    if value < minimum:
        raise ValueError(f"{key} must be at least {minimum}, not {value}")
    return value
