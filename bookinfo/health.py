"""The `/health` route every service has (Kubernetes probes it; Istio rewrites the probe so it still
works under strict mTLS). It answers from the process itself and never calls another service:
a readiness check that follows dependencies would make the whole app flap when one of them does.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response


def add_health_route(app: Flask, respond: Callable[[], Response]) -> None:
    app.add_url_rule("/health", "health", respond, methods=["GET"])
