"""details: the book's publication details.

v1 answers from memory. v2 (ENABLE_EXTERNAL_BOOK_SERVICE=true) asks Google Books instead, which
is what Istio's egress tasks use: inside a mesh that blocks outbound traffic, the call fails until
a ServiceEntry lets it out, and the page shows "Error fetching product details". With
DO_NOT_ENCRYPT=true the call is plain HTTP on port 80, so the sidecar can originate the TLS.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

from . import ids, outbound
from .config import Settings
from .health import add_health_route
from .propagation import forward_headers
from .responses import json_response

ISBN = "0486424618"


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SETTINGS"] = settings or Settings.from_environ()
    add_health_route(app, lambda: json_response({"status": "Details is healthy"}))
    # Anything under /details answers, GET and POST alike, as the Ruby original does.
    for rule in ("/details", "/details/", "/details/<path:rest>"):
        app.add_url_rule(rule, "details", details_view, methods=["GET", "POST"])
    return app


def details_view(rest: str = "") -> Response:
    settings: Settings = current_app.config["SETTINGS"]
    product_id = ids.ruby_integer(last_path_segment(request.path))
    if product_id is None:
        return json_response({"error": "please provide numeric product id"}, status=400)
    if not settings.enable_external_book_service:
        return json_response(book_details(product_id))
    try:
        return json_response(fetch_external_details(product_id, settings))
    except ExternalBookError as exc:
        return json_response({"error": str(exc)}, status=400)


def book_details(product_id: int) -> dict[str, object]:
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def last_path_segment(path: str) -> str:
    """Ruby's `path.split('/').last`: trailing empty segments are dropped."""
    segments = path.split("/")
    while segments and segments[-1] == "":
        segments.pop()
    return segments[-1] if segments else ""


class ExternalBookError(Exception):
    """The external book service could not give us the book; the message goes to the caller."""


def fetch_external_details(product_id: int, settings: Settings) -> dict[str, object]:
    scheme = "http" if settings.do_not_encrypt else "https"
    port = settings.external_book_port or (80 if settings.do_not_encrypt else 443)
    host = settings.external_book_host
    url = f"{scheme}://{host}:{port}/books/v1/volumes?q=isbn:{ISBN}"
    try:
        response = outbound.get(
            url,
            forward_headers(request.headers, trace_context=settings.propagate_trace_headers),
            settings.external_book_timeout_seconds,
        )
    except outbound.CallError as exc:
        raise ExternalBookError(f"Failed to open TCP connection to {host}:{port} ({exc})") from None
    book = outbound.json_body(response)
    try:
        info = book["items"][0]["volumeInfo"]  # type: ignore[index]
        identifiers = {i["type"]: i["identifier"] for i in info.get("industryIdentifiers", [])}
        return {
            "id": product_id,
            "author": info["authors"][0],
            "year": info["publishedDate"],
            "type": "paperback" if info.get("printType") == "BOOK" else "unknown",
            "pages": info["pageCount"],
            "publisher": info["publisher"],
            "language": "English" if info.get("language") == "en" else "unknown",
            "ISBN-10": identifiers["ISBN_10"],
            "ISBN-13": identifiers["ISBN_13"],
        }
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ExternalBookError(
            f"unexpected answer from {host}:{port} (HTTP {response.status_code}), no book found"
        ) from None
