"""reviews: two reviews of the book, and (v2, v3) their star ratings from the ratings service.

The three versions are the same code with different settings, as in Istio:
v1 ENABLE_RATINGS=false (no stars), v2 ENABLE_RATINGS=true (black stars), v3 ENABLE_RATINGS=true
and STAR_COLOR=red. v2 waits up to 10 s for ratings and v3 only 2.5 s; Istio's fault-injection
task is built on that difference.

If ratings cannot answer, each review carries "Ratings service is currently unavailable" and
reviews still answers 200: one failing dependency degrades the page, it does not break it.
"""

from __future__ import annotations

import json

from flask import Flask, Response, current_app, request

from . import ids, outbound
from .config import Settings
from .health import add_health_route
from .propagation import forward_headers
from .responses import raw_json_response

RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"

REVIEWS = (
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other "
        "plays by Shakespeare.",
    ),
)


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SETTINGS"] = settings or Settings.from_environ()
    add_health_route(app, lambda: raw_json_response('{"status": "Reviews is healthy"}'))
    app.add_url_rule("/reviews/<product_id>", "reviews", reviews_view, methods=["GET"])
    return app


def reviews_view(product_id: str) -> Response:
    settings: Settings = current_app.config["SETTINGS"]
    number = ids.java_int(product_id)
    if number is None:
        # JAX-RS cannot bind the path parameter to an int, so the resource does not match.
        return Response("Not Found", status=404, mimetype="text/plain")
    stars = fetch_stars(number, settings) if settings.enable_ratings else {}
    return raw_json_response(reviews_json(str(number), settings, stars))


def fetch_stars(product_id: int, settings: Settings) -> dict[str, int]:
    """Stars per reviewer from ratings; a reviewer missing here gets the "unavailable" message."""
    url = f"{settings.service_url('ratings')}/ratings/{product_id}"
    response = outbound.try_get(
        url,
        headers=forward_headers(request.headers, trace_context=settings.propagate_trace_headers),
        timeout=settings.ratings_timeout_seconds,
        accept_json=True,
    )
    if response is None or response.status_code != 200:
        return {}
    body = outbound.json_body(response)
    ratings = body.get("ratings") if isinstance(body, dict) else None
    if not isinstance(ratings, dict):
        return {}
    return {
        name: stars
        for name, stars in ratings.items()
        if isinstance(stars, int) and not isinstance(stars, bool)
    }


def reviews_json(product_id: str, settings: Settings, stars: dict[str, int]) -> str:
    """The response body, byte for byte as Istio's Java service builds it by hand.

    Note the string id, the two spaces before each review member, and no space after the commas
    that separate members: Istio's docs compare this text exactly.
    """
    entries = []
    for reviewer, text in REVIEWS:
        entry = "{" + f'  "reviewer": {_q(reviewer)},' + f'  "text": {_q(text)}'
        if settings.enable_ratings:
            if reviewer in stars:
                color = _q(settings.star_color)
                entry += f', "rating": {{"stars": {stars[reviewer]}, "color": {color}}}'
            else:
                entry += f', "rating": {{"error": {_q(RATINGS_UNAVAILABLE)}}}'
        entries.append(entry + "}")
    # Java string concatenation turns an unset variable into the text "null".
    pod = "null" if settings.hostname is None else settings.hostname
    cluster = "null" if settings.cluster_name is None else settings.cluster_name
    return (
        "{"
        f'"id": {_q(product_id)},'
        f'"podname": {_q(pod)},'
        f'"clustername": {_q(cluster)},'
        f'"reviews": [{",".join(entries)}]'
        "}"
    )


def _q(text: str) -> str:
    """A JSON string literal. (The Java original does not escape at all; we keep the JSON valid.)"""
    return json.dumps(text, ensure_ascii=False)
