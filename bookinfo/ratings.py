"""ratings: the stars each reviewer gave the book.

v1 answers from memory (5 and 4 stars). `POST /ratings/<id>` with a JSON body replaces the ratings
of that id, kept in this process's memory until it restarts (Istio's microservices tutorial does
this with curl).

SERVICE_VERSION picks a demo mode that misbehaves on purpose, to have something to observe:
  v-faulty       half of the GETs answer 503
  v-delayed      half of the GETs answer after 7 s
  v-unavailable  every 60 s, switches between answering and answering 503
  v-unhealthy    every 15 min, switches /health to 500 and GETs to 503, and back

Istio's database-backed v2 (MongoDB or MySQL) is not part of this Bookinfo: starting ratings with
SERVICE_VERSION=v2 stops with an error saying so.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, request

from . import ids
from .config import ConfigError, Settings
from .health import add_health_route
from .responses import json_response

DEFAULT_RATINGS = {"Reviewer1": 5, "Reviewer2": 4}


def create_app(
    settings: Settings | None = None,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> Flask:
    settings = settings or Settings.from_environ()
    if settings.service_version == "v2":
        raise ConfigError(
            "SERVICE_VERSION=v2 is Istio's database-backed ratings, which istiolab's Bookinfo "
            "does not include; use v1 or a demo mode (v-faulty, v-delayed, v-unavailable, "
            "v-unhealthy)"
        )
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    # Not for security: the coin that decides which requests the demo modes spoil.
    rng = rng or random.Random()  # noqa: S311
    app.extensions["ratings.state"] = RatingsState(settings, clock, rng)
    add_health_route(app, health_view)
    # Like the Node original, match every path and dispatch by prefix: "/ratings/<anything>".
    app.add_url_rule("/", "ratings", ratings_view, methods=["GET", "POST"])
    app.add_url_rule("/<path:path>", "ratings", ratings_view, methods=["GET", "POST"])
    return app


@dataclass
class RatingsState:
    settings: Settings
    clock: Callable[[], float]
    rng: random.Random
    started: float = 0.0
    posted: dict[int, object] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def mode(self) -> str:
        return self.settings.service_version

    def _flipped(self, period: float) -> bool:
        """Whether an odd number of periods has passed since start (a flip-flop on a timer)."""
        return int((self.clock() - self.started) // period) % 2 == 1

    @property
    def healthy(self) -> bool:
        return not (
            self.mode == "v-unhealthy" and self._flipped(self.settings.unhealthy_period_seconds)
        )

    @property
    def unavailable(self) -> bool:
        if self.mode == "v-unavailable":
            return self._flipped(self.settings.unavailable_period_seconds)
        if self.mode == "v-unhealthy":
            return not self.healthy
        if self.mode == "v-faulty":
            return self.rng.random() <= 0.5
        return False

    def delay_seconds(self) -> float:
        if self.mode == "v-delayed" and self.rng.random() <= 0.5:
            return self.settings.demo_delay_seconds
        return 0.0


def _state() -> RatingsState:
    return current_app.extensions["ratings.state"]


def health_view() -> Response:
    if _state().healthy:
        return json_response({"status": "Ratings is healthy"})
    return json_response({"status": "Ratings is not healthy"}, status=500)


def ratings_view(path: str = "") -> Response:
    if not request.path.startswith("/ratings/"):
        return Response(status=404)  # the Node dispatcher's 404 has an empty body
    product_id = ids.js_parse_int(_raw_url().split("/")[-1])
    if product_id is None:
        return json_response({"error": "please provide numeric product ID"}, status=400)
    if request.method == "POST":
        return _save_ratings(product_id)
    return _ratings_for(product_id)


def _ratings_for(product_id: int) -> Response:
    state = _state()
    if state.unavailable:
        return json_response({"error": "Service unavailable"}, status=503)
    delay = state.delay_seconds()
    if delay:
        time.sleep(delay)  # the demo's whole point: a slow answer
    with state.lock:
        ratings = state.posted.get(product_id, DEFAULT_RATINGS)
    return json_response({"id": product_id, "ratings": ratings})


def _save_ratings(product_id: int) -> Response:
    try:
        ratings = json.loads(
            request.get_data(as_text=True),
            parse_constant=_reject_constant,
            parse_float=_js_float,
        )
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return json_response({"error": "please provide valid ratings JSON"}, status=400)
    state = _state()
    with state.lock:
        state.posted[product_id] = ratings
    return json_response({"id": product_id, "ratings": ratings})


def _js_float(text: str) -> float | None:
    """A JSON number as JavaScript keeps it: 1e400 overflows to Infinity, stored as null."""
    value = float(text)
    return value if math.isfinite(value) else None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON does not


def _raw_url() -> str:
    """The request target as sent, like Node's req.url (path and query, not percent-decoded)."""
    environ = request.environ
    return environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path
