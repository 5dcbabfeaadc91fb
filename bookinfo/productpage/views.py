"""productpage's routes: the page, login and logout, the JSON API, health."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, redirect, render_template, request, session

from ..config import Settings
from ..propagation import productpage_headers
from ..responses import PYTHON_DEFAULT, json_response
from .backends import fetch_details, fetch_ratings, fetch_reviews
from .catalogue import PAGE_PRODUCT, PRODUCTS
from .sessions import current_user

bp = Blueprint("productpage", __name__)

# The services as the landing page draws them (productpage calls details and reviews, reviews
# calls ratings).
SERVICE_TREE = {
    "name": "productpage",
    "endpoint": "details",
    "children": [
        {"name": "details", "endpoint": "details", "children": []},
        {
            "name": "reviews",
            "endpoint": "reviews",
            "children": [{"name": "ratings", "endpoint": "ratings", "children": []}],
        },
    ],
}


def _outgoing_headers() -> dict[str, str]:
    settings: Settings = current_app.config["SETTINGS"]
    return productpage_headers(
        request.headers, current_user(), trace_context=settings.propagate_trace_headers
    )


@bp.get("/")
@bp.get("/index.html")
def index() -> str:
    return render_template("index.html", tree=SERVICE_TREE)


@bp.get("/health")
def health() -> Response:
    return Response("Product page is healthy", mimetype="text/html")


@bp.post("/login")
def login() -> Response:
    """Log in as anyone: the password is ignored. Istio routes on the user name, not on trust."""
    user = request.values.get("username", "")
    if user:
        session["user"] = user
    return _back_to_referrer()


@bp.get("/logout")
def logout() -> Response:
    session.pop("user", None)
    return _back_to_referrer()


def _back_to_referrer() -> Response:
    """Redirect to the page the form was on, or to the page itself when there is no Referer.

    Only the path and query of the Referer are kept, so the redirect stays on this site. (Istio's
    productpage sends `Location: None` when there is no Referer; scripts that log in with curl
    do exactly that.)
    """
    try:
        referrer = urlsplit(request.headers.get("Referer", ""))
    except ValueError:  # e.g. "http://[" is not a URL at all
        referrer = urlsplit("")
    path = referrer.path
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        path = "/productpage"  # "//host/..." would leave the site
    target = f"{path}?{referrer.query}" if referrer.query else path
    return redirect(target, code=302)


@bp.get("/productpage")
def front() -> str:
    settings: Settings = current_app.config["SETTINGS"]
    headers = _outgoing_headers()
    details_status, details = fetch_details(PAGE_PRODUCT["id"], headers)
    # FLOOD_FACTOR > 0 (the productpage-v-flooding image): extra reviews calls whose answers are
    # thrown away, to have traffic worth rate-limiting.
    for _ in range(settings.flood_factor):
        fetch_reviews(PAGE_PRODUCT["id"], headers)
    reviews_status, reviews = fetch_reviews(PAGE_PRODUCT["id"], headers)
    return render_template(
        "productpage.html",
        product=PAGE_PRODUCT,
        details=details if isinstance(details, dict) else {},
        details_status=details_status,
        reviews=reviews if isinstance(reviews, dict) else {},
        review_entries=_review_entries(reviews),
        reviews_status=reviews_status,
        user=current_user(),
    )


def _review_entries(reviews: object) -> list[dict]:
    """The reviews to draw; anything that is not a review object is skipped, not a crash."""
    entries = reviews.get("reviews") if isinstance(reviews, dict) else None
    return (
        [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []
    )


def _api_json(data: object, status: int = 200) -> Response:
    return json_response(data, status=status, separators=PYTHON_DEFAULT)


@bp.get("/api/v1/products")
def products() -> Response:
    return _api_json(PRODUCTS)


@bp.get("/api/v1/products/<product_id>")
def product(product_id: str) -> Response:
    return _api_json(*_swap(fetch_details(product_id, _outgoing_headers())))


@bp.get("/api/v1/products/<product_id>/reviews")
def product_reviews(product_id: str) -> Response:
    return _api_json(*_swap(fetch_reviews(product_id, _outgoing_headers())))


@bp.get("/api/v1/products/<product_id>/ratings")
def product_ratings(product_id: str) -> Response:
    return _api_json(*_swap(fetch_ratings(product_id, _outgoing_headers())))


def _swap(answer: tuple[int, object]) -> tuple[object, int]:
    status, body = answer
    return body, status


@bp.app_template_filter("stars")
def stars_filter(rating: object) -> int:
    """The number of filled stars a rating shows (0 shows none, as in Istio's template)."""
    stars = rating.get("stars") if isinstance(rating, dict) else None
    return (
        max(0, min(int(stars), 5)) if isinstance(stars, int) and not isinstance(stars, bool) else 0
    )
