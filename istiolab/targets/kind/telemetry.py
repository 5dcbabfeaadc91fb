"""Metrics and traces as Istio's addons serve them: Prometheus' instant vectors, and Jaeger's or
Zipkin's traces as Zipkin v2 spans."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..base import MetricSample, Span
from .layout import MESH_NAMESPACE


def parse_prometheus_vector(document: Mapping[str, Any]) -> list[MetricSample]:
    """Samples from a Prometheus /api/v1/query answer whose result is an instant vector."""
    if document.get("status") != "success":
        raise ValueError(
            f"Prometheus answered {document.get('errorType', 'an error')}: "
            f"{document.get('error', document)}"
        )
    data = document.get("data") or {}
    if data.get("resultType") != "vector":
        raise ValueError(f"expected a vector result, got {data.get('resultType')!r}")
    samples = []
    for item in data.get("result") or []:
        labels = dict(item.get("metric") or {})
        name = labels.pop("__name__", "")
        _timestamp, value = item["value"]
        samples.append(MetricSample(name=name, labels=labels, value=float(value)))
    return samples


@dataclass(frozen=True)
class TracingBackend:
    """Which query API the `tracing` Service in istio-system serves."""

    kind: str  # "jaeger" or "zipkin"
    service: str = "tracing"
    port: int = 80


def tracing_backend(service: Mapping[str, Any]) -> TracingBackend:
    """Tell Istio's Jaeger addon from its Zipkin addon by what the `tracing` Service selects.

    Both addons (samples/addons/jaeger.yaml and extras/zipkin.yaml) name their query Service
    `tracing`, port 80: Jaeger's selects app=jaeger, Zipkin's app=zipkin.
    """
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    kind = "zipkin" if selector.get("app") == "zipkin" else "jaeger"
    ports = spec.get("ports") or []
    port = int(ports[0].get("port", 80)) if ports else 80
    return TracingBackend(
        kind=kind, service=service.get("metadata", {}).get("name", "tracing"), port=port
    )


def _tag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def jaeger_to_zipkin(trace: Mapping[str, Any]) -> list[Span]:
    """One trace of Jaeger's query API (/api/traces) as Zipkin v2 spans, oldest first."""
    processes = trace.get("processes") or {}
    spans = []
    for jaeger_span in trace.get("spans") or []:
        tags = {
            tag["key"]: _tag_text(tag.get("value"))
            for tag in jaeger_span.get("tags") or []
            if not str(tag.get("key", "")).startswith("internal.")
        }
        kind = tags.pop("span.kind", "").upper()
        process = processes.get(jaeger_span.get("processID"), {})
        span: dict[str, Any] = {
            "traceId": jaeger_span.get("traceID", trace.get("traceID", "")),
            "id": jaeger_span.get("spanID", ""),
            "name": jaeger_span.get("operationName", ""),
            "timestamp": int(jaeger_span.get("startTime", 0)),
            "duration": int(jaeger_span.get("duration", 0)),
            "localEndpoint": {"serviceName": process.get("serviceName", "")},
            "tags": tags,
        }
        parent = next(
            (
                reference.get("spanID")
                for reference in jaeger_span.get("references") or []
                if reference.get("refType") == "CHILD_OF"
            ),
            None,
        )
        if parent:
            span["parentId"] = parent
        if kind:
            span["kind"] = kind
        spans.append(span)
    return sorted(spans, key=lambda span: span["timestamp"])


def parse_zipkin_traces(document: Any) -> list[list[Span]]:
    """A Zipkin v2 /api/v2/traces answer: a list of traces, each a list of spans."""
    if not isinstance(document, list) or not all(isinstance(trace, list) for trace in document):
        raise ValueError("expected a Zipkin v2 trace list: a JSON list of lists of spans")
    return [sorted(trace, key=lambda span: span.get("timestamp", 0)) for trace in document]


def newest_first(traces: Sequence[list[Span]]) -> list[list[Span]]:
    return sorted(
        traces,
        key=lambda trace: max((s.get("timestamp", 0) for s in trace), default=0),
        reverse=True,
    )


def resolve_service_name(wanted: str, known: Sequence[str]) -> str | None:
    """The tracing service name for `wanted`: itself, or "NAME.NAMESPACE" as Istio names them."""
    if wanted in known:
        return wanted
    matches = [name for name in known if name.startswith(f"{wanted}.")]
    if f"{wanted}.{MESH_NAMESPACE}" in matches:
        return f"{wanted}.{MESH_NAMESPACE}"
    return matches[0] if len(matches) == 1 else None
