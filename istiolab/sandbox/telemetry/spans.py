"""The collector's span storage: in memory, bounded, oldest traces dropped first.

Like Zipkin's in-memory storage (`STORAGE_TYPE=mem`, `MEM_MAX_SPANS`), which Istio's zipkin addon
runs: it holds at most `max_spans` spans and, when more arrive, drops whole traces, the ones that
arrived first. Spans are grouped by trace as they arrive, and each trace remembers when it
started and which services reported in it, so a query looks at the spans of the few traces that
can match only.

One lock guards everything; the proxies post while learners query, so a query holds it only for
short steps: first to pick the candidate traces, then to copy each candidate's spans. Spans are
never changed in place (a merge makes a new dict), which makes those copies safe to read.
A span of Envoy's takes about 3 KB here: 100 000 spans are about 300 MB.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from . import zipkin
from .zipkin import Span, TraceQuery

DEFAULT_MAX_SPANS = 100_000


class _Trace:
    """One trace's spans by span key, with what queries look at first: when it started (its
    earliest span's timestamp, in microseconds) and the services that reported a span in it."""

    __slots__ = ("services", "spans", "timestamp")

    def __init__(self) -> None:
        self.spans: dict[tuple[str, bool], Span] = {}
        self.timestamp = 0
        self.services: set[str] = set()

    def add(self, span: Span) -> int:
        """Add or merge one span; return how many spans were added (1, or 0 for a merge)."""
        key = zipkin.span_key(span)
        known = self.spans.get(key)
        self.spans[key] = span if known is None else zipkin.merge_spans(known, span)
        started = span.get("timestamp") or 0
        if started and (not self.timestamp or started < self.timestamp):
            self.timestamp = started
        self.services.add(zipkin.service_name(span))
        return int(known is None)


class SpanStore:
    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        if max_spans < 1:
            raise ValueError("max_spans must be at least 1")
        self.max_spans = max_spans
        self._lock = threading.Lock()
        self._traces: OrderedDict[str, _Trace] = OrderedDict()  # by trace id, oldest first
        self._spans = 0
        self.received = 0  # spans accepted, reports of a span already held included
        self.evicted = 0  # spans dropped to stay within max_spans

    def add(self, spans: Iterable[Span]) -> None:
        with self._lock:
            for span in spans:
                self.received += 1
                trace = self._traces.get(span["traceId"])
                if trace is None:
                    trace = self._traces[span["traceId"]] = _Trace()
                self._spans += trace.add(span)
            while self._spans > self.max_spans:
                _, oldest = self._traces.popitem(last=False)
                self._spans -= len(oldest.spans)
                self.evicted += len(oldest.spans)

    def trace(self, trace_id: str) -> list[Span] | None:
        """One trace's spans by start time; None for a trace id it does not hold."""
        key = trace_id.lower()
        key = key.rjust(16 if len(key) <= 16 else 32, "0")
        with self._lock:
            trace = self._traces.get(key)
            spans = list(trace.spans.values()) if trace is not None else None
        return _by_time(spans) if spans is not None else None

    def traces(self, query: TraceQuery) -> list[list[Span]]:
        """The traces that match, newest first, at most `query.limit`."""
        with self._lock:
            candidates = [
                (trace.timestamp, trace)
                for trace in self._traces.values()
                if query.in_window(trace.timestamp)
                and (query.service_name is None or query.service_name in trace.services)
            ]
        candidates.sort(key=lambda candidate: candidate[0], reverse=True)
        found = []
        for _, trace in candidates:
            with self._lock:
                spans = list(trace.spans.values())
            if query.matches(spans):
                found.append(_by_time(spans))
                if len(found) == query.limit:
                    break
        return found

    def service_names(self) -> list[str]:
        with self._lock:
            names = {name for trace in self._traces.values() for name in trace.services}
        return sorted(names - {""})

    def span_names(self, service: str) -> list[str]:
        return sorted({str(span["name"]) for span in self._spans_of(service) if span.get("name")})

    def remote_service_names(self, service: str) -> list[str]:
        names = {zipkin.remote_service_name(span) for span in self._spans_of(service)}
        return sorted(names - {""})

    def _spans_of(self, service: str) -> list[Span]:
        service = service.lower()
        with self._lock:
            return [
                span
                for trace in self._traces.values()
                if service in trace.services
                for span in trace.spans.values()
                if zipkin.service_name(span) == service
            ]

    def dependencies(self, end_ts: int, lookback: int) -> list[dict[str, Any]]:
        """Links from the traces that started in [end_ts - lookback, end_ts] (milliseconds)."""
        window = TraceQuery(end_ts=end_ts, lookback=lookback)
        with self._lock:
            traces = [
                list(trace.spans.values())
                for trace in self._traces.values()
                if window.in_window(trace.timestamp)
            ]
        return zipkin.dependency_links(traces)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "spans": self._spans,
                "traces": len(self._traces),
                "max_spans": self.max_spans,
                "received_spans": self.received,
                "evicted_spans": self.evicted,
            }


def _by_time(trace: list[Span]) -> list[Span]:
    return sorted(trace, key=lambda span: (span.get("timestamp", 0), span["id"]))
