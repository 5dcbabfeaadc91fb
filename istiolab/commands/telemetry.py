"""`istiolab traces` and `istiolab metrics`: what Zipkin and Prometheus would show, in a terminal.

    istiolab traces [--service NAME] [--limit N] [--target sandbox|kind] [-o json]
    istiolab metrics [--target sandbox|kind] [-o json|prometheus]

`traces` draws each recent trace as a waterfall, the way Zipkin's and Jaeger's UIs do: one row per
span, nested under the span that caused it (its parentId), with a bar showing when it started and
how long it took within the whole trace. A CLIENT span is the caller's sidecar (or the gateway)
timing the call; the SERVER span under it is the callee's sidecar timing the same request.

`metrics` adds up `istio_requests_total`, the counter every proxy keeps, by who called whom and
how it went: reporter, source and destination workload, destination service, response code and
flags, and whether the connection was mutual TLS.

On the sandbox both read its telemetry process (istiolab.sandbox.telemetry); on kind, Istio's
tracing addon and Prometheus, through the same questions lab checks ask (targets/).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import IstiolabError
from ..sandbox import lifecycle
from ..table import format_table
from ..targets.base import MetricSample, Span, Target

TARGETS = ("sandbox", "kind")
DEFAULT_LIMIT = 5
BAR_WIDTH = 24
NAME_WIDTH = 48  # span names longer than this are cut
# Tree glyphs: a child, the last child, a line passing a child by, nothing; and in ASCII.
TREE = ("├─ ", "└─ ", "│  ", "   ")
ASCII_TREE = ("|- ", "`- ", "|  ", "   ")
METRICS_HEADER = (
    "REPORTER",
    "SOURCE",
    "DESTINATION",
    "SERVICE",
    "CODE",
    "FLAGS",
    "SECURITY",
    "REQUESTS",
)
KIND_PROMETHEUS = (
    "Prometheus in istio-system (kubectl -n istio-system port-forward svc/prometheus 9090)"
)


def register(commands: argparse._SubParsersAction) -> None:
    traces = commands.add_parser(
        "traces",
        help="recent traces as waterfalls, like Zipkin's UI",
        description="Show the newest traces the mesh's proxies reported, one waterfall each: "
        "every span under the span that caused it, with a bar for when it ran.",
    )
    traces.add_argument(
        "--service", help="only traces with a span of this service, e.g. details or details.default"
    )
    traces.add_argument(
        "--limit", type=_positive, default=DEFAULT_LIMIT, help=f"how many (default {DEFAULT_LIMIT})"
    )
    _target_option(traces)
    traces.add_argument(
        "-o",
        "--output",
        choices=("waterfall", "json"),
        default="waterfall",
        help="json: the traces as Zipkin's API returns them",
    )
    traces.set_defaults(handler=_traces)

    metrics = commands.add_parser(
        "metrics",
        help="istio_requests_total summed by caller, callee and outcome",
        description="Sum Istio's request counter by reporter, source and destination, response "
        "code and flags, and connection security, and say where the full metrics are.",
    )
    _target_option(metrics)
    metrics.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "prometheus"),
        default="table",
        help="json: the samples; prometheus: the text Prometheus scrapes",
    )
    metrics.set_defaults(handler=_metrics)


def _target_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="sandbox",
        help="where the mesh runs: the sandbox (default), or the kind cluster with Istio's addons",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _target(name: str) -> Target:
    # Each target's modules are loaded only when asked for: the CLI starts faster without them.
    if name == "kind":
        from ..targets.kind import KindTarget  # kubectl and istioctl

        return KindTarget()
    from ..targets.sandbox import SandboxTarget

    return SandboxTarget(lifecycle.state_dir())


# ============================================================================================
# istiolab traces


def _traces(args: argparse.Namespace) -> int:
    traces = _target(args.target).traces(args.service, args.limit)
    if args.output == "json":
        print(json.dumps(traces, indent=2))
        return 0
    if not traces:
        which = f" with a span of {args.service}" if args.service else ""
        print(
            f"No traces{which} yet. Send requests through the mesh; only sampled ones are "
            "traced (Istio's default: 1 in 100; a Telemetry resource's "
            "randomSamplingPercentage: 100 traces all of them)."
        )
        return 0
    print(format_traces(traces, unicode=_can_draw()))
    return 0


def _can_draw() -> bool:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    return encoding in ("utf8", "utf16", "utf32")


def format_traces(traces: Sequence[Sequence[Span]], *, unicode: bool = True) -> str:
    return "\n\n".join(format_trace(trace, unicode=unicode) for trace in traces)


def format_trace(
    trace: Sequence[Span],
    *,
    unicode: bool = True,
    bar_width: int = BAR_WIDTH,
    name_width: int = NAME_WIDTH,
) -> str:
    """One trace as a header line and a waterfall, one row per span: the reporting service
    (indented under its parent), the span's kind and name, a bar, the duration, the outcome.

    Rows nest by parentId, children in start order; a span whose parent is not in the trace (not
    reported, or not yet) is shown at the top level. Each bar covers the span's share of the
    trace, from the trace's first start to its last end.
    """
    spans = [span for span in trace if span.get("id")]
    if not spans:
        return "trace (no spans)"
    start = min(_start(span) for span in spans)
    end = max(_start(span) + _duration(span) for span in spans)
    total = max(end - start, 1)
    rows = list(_tree(spans, unicode))
    root = rows[0][1]
    errors = sum(_is_error(span) for span in spans)
    header = "  ".join(
        part
        for part in (
            f"trace {root.get('traceId', '?')}",
            _service(root),
            _request(root),
            _ms(total),
            f"{len(spans)} span{'s' * (len(spans) != 1)}",
            f"{errors} error{'s' * (errors != 1)}" if errors else "",
        )
        if part
    )
    columns = [
        (
            prefix + _service(span),
            str(span.get("kind") or "").lower(),
            _truncate(str(span.get("name") or ""), name_width, unicode),
        )
        for prefix, span in rows
    ]
    widths = [max(len(column[i]) for column in columns) for i in range(3)]
    lines = [header]
    for column, (_, span) in zip(columns, rows, strict=True):
        left = "  ".join(text.ljust(width) for text, width in zip(column, widths, strict=True))
        bar = _bar(_start(span) - start, _duration(span), total, bar_width, unicode)
        status = _status(span)
        lines.append(
            f"  {left}  |{bar}| {_ms(_duration(span)):>9}" + (f"  {status}" if status else "")
        )
    return "\n".join(lines)


def _tree(spans: Sequence[Span], unicode: bool) -> Iterable[tuple[str, Span]]:
    """(prefix, span) in display order: depth first, children by start time."""
    branch, last, through, space = TREE if unicode else ASCII_TREE
    ids = {span["id"] for span in spans}
    children: dict[str, list[Span]] = {}
    roots = []
    for span in sorted(spans, key=lambda span: (_start(span), span["id"])):
        parent = span.get("parentId")
        if parent in ids and parent != span["id"]:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    seen: set[int] = set()

    def walk(span: Span, lead: str, prefix: str) -> Iterable[tuple[str, Span]]:
        if id(span) in seen:  # a parentId loop: show each span once
            return
        seen.add(id(span))
        yield prefix, span
        kids = children.get(span["id"], [])
        for index, child in enumerate(kids):
            final = index == len(kids) - 1
            yield from walk(
                child, lead + (space if final else through), lead + (last if final else branch)
            )

    for root in roots:
        yield from walk(root, "", "")
    for span in spans:  # anything a loop kept out of reach
        if id(span) not in seen:
            yield from walk(span, "", "")


def _bar(offset: int, duration: int, total: int, width: int, unicode: bool) -> str:
    begin = min(width - 1, int(offset * width / total))
    length = max(1, round(duration * width / total))
    length = min(length, width - begin)
    return " " * begin + ("█" if unicode else "#") * length + " " * (width - begin - length)


def _status(span: Span) -> str:
    tags = span.get("tags") or {}
    code = str(tags.get("http.status_code", ""))
    flags = str(tags.get("response_flags", "-"))
    text = " ".join(part for part in (code, "" if flags == "-" else flags) if part)
    return f"ERROR {text}".strip() if _is_error(span) else text


def _request(span: Span) -> str:
    tags = span.get("tags") or {}
    method = str(tags.get("http.method", ""))
    url = str(tags.get("http.url", ""))
    path = urlsplit(url).path if "://" in url else url
    return f"{method} {path}".strip()


def _service(span: Span) -> str:
    return str((span.get("localEndpoint") or {}).get("serviceName") or "?")


def _is_error(span: Span) -> bool:
    return "error" in (span.get("tags") or {})


def _start(span: Span) -> int:
    return int(span.get("timestamp") or 0)


def _duration(span: Span) -> int:
    return int(span.get("duration") or 0)


def _ms(microseconds: int) -> str:
    return f"{microseconds / 1000:.1f} ms"


def _truncate(text: str, width: int, unicode: bool) -> str:
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if unicode else text[: width - 3] + "..."


# ============================================================================================
# istiolab metrics


def _metrics(args: argparse.Namespace) -> int:
    target = _target(args.target)
    if args.output == "prometheus":
        print(_prometheus_text(target), end="")
        return 0
    samples = target.request_metrics()
    if args.output == "json":
        print(json.dumps([_sample_json(sample) for sample in samples], indent=2))
        return 0
    if samples:
        print(format_table(METRICS_HEADER, metrics_rows(samples)))
    else:
        print("No requests counted yet: send some through the mesh.")
    where = target.telemetry_url("metrics") if target.name == "sandbox" else KIND_PROMETHEUS
    print(f"\nEvery label and the duration and size histograms: {where}")
    return 0


def _prometheus_text(target: Target) -> str:
    if target.name == "sandbox":
        from ..sandbox.telemetry import client

        try:
            return client.fetch_metrics_text(target.telemetry_url("metrics"))
        except client.TelemetryUnavailable as error:
            raise IstiolabError(error.message, fix=error.fix) from None
    return "".join(format_sample(sample) + "\n" for sample in target.request_metrics())


def metrics_rows(samples: Iterable[MetricSample]) -> list[tuple[str, ...]]:
    """istio_requests_total summed per (reporter, source, destination, service, code, flags,
    security), most requests first within each caller -> callee pair."""
    totals: dict[tuple[str, ...], float] = {}
    for sample in samples:
        if sample.name != "istio_requests_total":
            continue
        labels = sample.labels
        key = (
            labels.get("reporter", "?"),
            _workload(labels, "source"),
            _workload(labels, "destination"),
            labels.get("destination_service", "unknown"),
            labels.get("response_code", "?"),
            labels.get("response_flags", "-"),
            labels.get("connection_security_policy", "unknown"),
        )
        totals[key] = totals.get(key, 0.0) + sample.value
    ordered = sorted(
        totals.items(), key=lambda item: (item[0][1], item[0][2], item[0][0], -item[1])
    )
    return [(*key, _count(value)) for key, value in ordered]


def format_sample(sample: MetricSample) -> str:
    """One sample in Prometheus' text format: name{label="value",...} value."""
    labels = ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} {_count(sample.value)}"


def _workload(labels: Mapping[str, str], side: str) -> str:
    workload = labels.get(f"{side}_workload", "unknown")
    namespace = labels.get(f"{side}_workload_namespace", "unknown")
    return workload if workload == "unknown" else f"{workload}.{namespace}"


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample_json(sample: MetricSample) -> dict[str, Any]:
    return {"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
