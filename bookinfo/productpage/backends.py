"""productpage's calls to details, reviews and ratings, and what it makes of their answers.

Each function returns `(status, body)`: the downstream answer when it is a 200 with JSON, else an
error body with the downstream status code, or 500 when nothing usable came back (refused, timed
out, not JSON). The page turns errors into "Error fetching product details/reviews".

Two behaviours here look like bugs, and are kept on purpose because Istio's tasks teach with them:
- Every call has a fixed 3 s timeout. A slower dependency is given up on, whatever the mesh says.
- reviews is tried twice. With a 3 s timeout, a hanging reviews costs 6 s before the page gives
  up; with an Istio route timeout of 0.5 s, it costs 1 s. The fault-injection and request-timeout
  tasks measure exactly these numbers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import current_app

from .. import metrics, outbound
from ..config import Settings

DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."
REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
RATINGS_ERROR = "Sorry, product ratings are currently unavailable for this book."

Answer = tuple[int, Any]


def fetch_details(product_id: object, headers: dict[str, str]) -> Answer:
    return _call("details", f"/details/{_segment(product_id)}", headers, DETAILS_ERROR)


def fetch_reviews(product_id: object, headers: dict[str, str]) -> Answer:
    settings = _settings()
    return _call(
        "reviews",
        f"/reviews/{_segment(product_id)}",
        headers,
        REVIEWS_ERROR,
        settings.reviews_attempts,
    )


def fetch_ratings(product_id: object, headers: dict[str, str]) -> Answer:
    return _call("ratings", f"/ratings/{_segment(product_id)}", headers, RATINGS_ERROR)


def _call(
    service: str, path: str, headers: dict[str, str], error: str, attempts: int = 1
) -> Answer:
    settings = _settings()
    url = settings.service_url(service) + path
    status = 500
    for _ in range(attempts):
        response = outbound.try_get(url, headers, timeout=settings.productpage_timeout_seconds)
        if response is None:
            status = 500
            continue
        status = response.status_code
        body = outbound.json_body(response)
        if status == 200 and body is not None:
            metrics.count_result(service, 200)
            return 200, body
        if status == 200:
            status = 500  # a 200 we cannot read is no answer at all
    metrics.count_result(service, status)
    return status, {"error": error}


def _segment(product_id: object) -> str:
    # The id is passed on as the caller wrote it (details and reviews judge it), but escaped so
    # that "1?x" or "a/b" cannot change which path the other service sees.
    return quote(str(product_id), safe="")


def _settings() -> Settings:
    return current_app.config["SETTINGS"]
