"""Reading the telemetry process back: Zipkin's query API and the Prometheus text.

Used by the sandbox target (targets/sandbox.py) and by `istiolab traces` / `istiolab metrics`.
Each function takes the URL the control plane's /status gives (`zipkin`, `metrics`) and raises
TelemetryUnavailable, with what went wrong, when the answer is not what the process serves.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from prometheus_client.parser import text_string_to_metric_families

from ...errors import IstiolabError
from ...targets.base import MetricSample, Span
from ...targets.http import http_request
from ...targets.kind.telemetry import newest_first, parse_zipkin_traces, resolve_service_name

REQUESTS_TOTAL = "istio_requests_total"
LOOKBACK_MS = 7 * 86_400_000  # a week: every trace the collector still holds
TIMEOUT = 15.0


class TelemetryUnavailable(IstiolabError):
    """The telemetry process did not answer, or not as expected."""


def fetch_traces(zipkin_url: str, service: str | None = None, limit: int = 10) -> list[list[Span]]:
    """The newest `limit` traces, each a list of spans by start time, newest trace first.

    `service` is a tracing service name ("productpage.default") or the start of one, as Istio's
    proxies name them: "productpage" finds "productpage.default". A service no span names gives
    no traces.
    """
    parameters: dict[str, Any] = {
        "limit": limit,
        "endTs": int(time.time() * 1000),
        "lookback": LOOKBACK_MS,
    }
    if service is not None:
        known = [str(name) for name in _get_json(zipkin_url, "/api/v2/services")]
        resolved = resolve_service_name(service.lower(), known)
        if resolved is None:
            return []
        parameters["serviceName"] = resolved
    document = _get_json(zipkin_url, f"/api/v2/traces?{urlencode(parameters)}")
    try:
        return newest_first(parse_zipkin_traces(document))[:limit]
    except ValueError as error:
        raise TelemetryUnavailable(f"{zipkin_url} answered no Zipkin trace list: {error}") from None


def fetch_metrics_text(metrics_url: str) -> str:
    """The Prometheus text at `metrics_url` (http://127.0.0.1:<port>/stats/prometheus)."""
    return _get(metrics_url, "")


def fetch_metrics(metrics_url: str, name: str = REQUESTS_TOTAL) -> list[MetricSample]:
    """The samples named `name` (istio_requests_total by default) at `metrics_url`."""
    return parse_metrics(fetch_metrics_text(metrics_url), name)


def parse_metrics(text: str, name: str = REQUESTS_TOTAL) -> list[MetricSample]:
    """The samples named `name` in Prometheus' text format."""
    try:
        return [
            MetricSample(name=sample.name, labels=dict(sample.labels), value=sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]
    except ValueError as error:
        raise TelemetryUnavailable(f"not Prometheus' text format: {error}") from None


def _get(base_url: str, path: str) -> str:
    parts = urlsplit(base_url)
    if not parts.hostname or not parts.port:
        raise TelemetryUnavailable(f"not a telemetry URL: {base_url!r}")
    target = (parts.path.rstrip("/") + path) if path else (parts.path or "/")
    result = http_request(parts.hostname, parts.port, target, timeout=TIMEOUT)
    where = f"http://{parts.netloc}{target}"
    if result.status is None:
        raise TelemetryUnavailable(
            f"the sandbox's telemetry process does not answer at {where} ({result.error})",
            fix="istiolab status; if it does not come back, istiolab down and istiolab up",
        )
    if result.status != 200:
        raise TelemetryUnavailable(
            f"{where} answered HTTP {result.status}: {result.body.strip()[:200]}"
        )
    return result.body


def _get_json(base_url: str, path: str) -> Any:
    body = _get(base_url, path)
    try:
        return json.loads(body)
    except ValueError:
        raise TelemetryUnavailable(f"{base_url}{path} did not answer JSON") from None
