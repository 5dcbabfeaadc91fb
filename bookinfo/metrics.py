"""Application metrics in Prometheus format.

In a mesh, request counts and latencies come from the sidecars (`istio_requests_total`), so an app
only needs its own business counters. productpage has one, as in Istio's Bookinfo:
`request_result_total{destination_app, response_code}`, one count per call outcome.

Each app gets its own registry, so several apps can live in one process (the tests do that). The
services run one gunicorn worker with threads, so no multiprocess collector is needed.
"""

from __future__ import annotations

from flask import Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

_REGISTRY = "bookinfo.metrics.registry"
_REQUEST_RESULT = "bookinfo.metrics.request_result"


def init_app(app: Flask) -> None:
    registry = CollectorRegistry()
    app.extensions[_REGISTRY] = registry
    app.extensions[_REQUEST_RESULT] = Counter(
        "request_result",
        "Outcomes of productpage's calls to the other services",
        ["destination_app", "response_code"],
        registry=registry,
    )
    app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])


def count_result(destination_app: str, response_code: int) -> None:
    counter = current_app.extensions[_REQUEST_RESULT]
    counter.labels(destination_app=destination_app, response_code=str(response_code)).inc()


def _metrics_view() -> Response:
    body = generate_latest(current_app.extensions[_REGISTRY])
    return Response(body, content_type=CONTENT_TYPE_LATEST)
