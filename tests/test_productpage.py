"""productpage: the page's markers per reviews version, login, the JSON API, health and metrics."""

from __future__ import annotations

import os
import re

import pytest
import requests

from bookinfo import productpage
from bookinfo.config import Settings
from live import HOST, Reply, ServiceProcess, settings_for

PRODUCTS_BODY = (
    '[{"id": 0, "title": "The Comedy of Errors", "descriptionHtml": "<a href=\\"https://en.wikipedia'
    '.org/wiki/The_Comedy_of_Errors\\">Wikipedia Summary</a>: The Comedy of Errors is one of <b>'
    "William Shakespeare's</b> early plays. It is his shortest and one of his most farcical "
    "comedies, with a major part of the humour coming from slapstick and mistaken identity, in "
    'addition to puns and word play."}]'
)
DETAILS_BODY = (
    '{"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback", "pages": 200, '
    '"publisher": "PublisherA", "language": "English", "ISBN-10": "1234567890", '
    '"ISBN-13": "123-1234567890"}'
)
STAR = "glyphicon glyphicon-star"


def page(stack, session: requests.Session | None = None) -> requests.Response:
    response = (session or requests).get(stack.url("productpage", "/productpage"), timeout=10)
    assert response.status_code == 200
    return response


def test_health(bookinfo_v1):
    response = requests.get(bookinfo_v1.url("productpage", "/health"), timeout=5)
    assert response.status_code == 200
    assert response.text == "Product page is healthy"
    assert response.headers["Content-Type"].startswith("text/html")


def test_landing_page(bookinfo_v1):
    response = requests.get(bookinfo_v1.url("productpage", "/"), timeout=5)
    assert response.status_code == 200
    assert "<title>Simple Bookstore App</title>" in response.text
    assert "Hello! This is a simple bookstore application" in response.text
    assert (
        requests.get(bookinfo_v1.url("productpage", "/index.html"), timeout=5).text == response.text
    )


def test_page_with_reviews_v1_has_no_stars(bookinfo_v1):
    html = page(bookinfo_v1).text
    assert re.search(r"<title>.*</title>", html).group() == "<title>Simple Bookstore App</title>"
    for marker in ("William Shakespeare", "Book Details", "PublisherA", "Book Reviews"):
        assert marker in html
    assert "Reviews served by: reviews-v1-test" in html
    assert "Reviewer1" in html and "Reviewer2" in html
    assert STAR not in html
    assert "Error fetching" not in html


@pytest.mark.parametrize(("stack", "color"), [("bookinfo_v2", "black"), ("bookinfo_v3", "red")])
def test_page_with_ratings_has_five_and_four_stars(request, stack, color):
    html = page(request.getfixturevalue(stack)).text
    assert html.count(STAR) == 9  # 5 + 4 filled stars
    assert html.count("star-outline") == 1  # Reviewer2's empty fifth star
    assert html.count(f"color: {color}") == 2
    assert "Ratings service is currently unavailable" not in html


def test_page_shows_the_pod_and_cluster(serve, upstream):
    reviews = upstream(
        reply=Reply(
            body='{"id": "0","podname": "reviews-v2-abc","clustername": "east","reviews": '
            '[{"reviewer": "Reviewer1", "text": "t"}]}'
        )
    )
    details = upstream(reply=Reply(body=DETAILS_BODY))
    fields = settings_for(details=details.port, reviews=reviews.port)
    app = serve(productpage.create_app(Settings(**fields)))
    html = requests.get(app.url("/productpage"), timeout=10).text
    assert "Reviews served by: reviews-v2-abc on cluster east" in html


def test_zero_stars_show_neither_stars_nor_an_error(serve, upstream):
    body = (
        '{"id": "0","podname": "p","clustername": "null","reviews": '
        '[{"reviewer": "Reviewer1", "text": "t", "rating": {"stars": 0, "color": "red"}}]}'
    )
    peer = upstream(reply=Reply(body=body))
    app = serve(
        productpage.create_app(Settings(**settings_for(details=peer.port, reviews=peer.port)))
    )
    html = requests.get(app.url("/productpage"), timeout=10).text
    assert STAR not in html
    assert "star-outline" not in html


class TestLogin:
    def test_login_without_referer_redirects_to_the_page_and_sets_the_session(self, bookinfo_v1):
        response = requests.post(
            bookinfo_v1.url("productpage", "/login"),
            data={"username": "jason", "passwd": "password"},
            allow_redirects=False,
            timeout=5,
        )
        assert response.status_code == 302
        assert response.headers["Location"] == "/productpage"
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("session=")
        assert "HttpOnly" in cookie and "Path=/" in cookie

    def test_login_returns_to_the_referer_on_this_site(self, bookinfo_v1):
        response = requests.post(
            bookinfo_v1.url("productpage", "/login"),
            data={"username": "jason"},
            headers={"Referer": "http://localhost:8080/productpage?u=test"},
            allow_redirects=False,
            timeout=5,
        )
        assert response.headers["Location"] == "/productpage?u=test"

    @pytest.mark.parametrize("referer", ["https://evil.example/x", "//evil.example/x", "nonsense"])
    def test_login_never_redirects_off_site(self, bookinfo_v1, referer):
        response = requests.post(
            bookinfo_v1.url("productpage", "/login"),
            data={"username": "jason"},
            headers={"Referer": referer},
            allow_redirects=False,
            timeout=5,
        )
        assert response.headers["Location"] in ("/productpage", "/x")
        assert "evil" not in response.headers["Location"]

    def test_the_page_greets_the_user_and_logout_forgets_them(self, bookinfo_v2):
        with requests.Session() as browser:
            browser.post(
                bookinfo_v2.url("productpage", "/login"), data={"username": "jason"}, timeout=5
            )
            html = page(bookinfo_v2, browser).text
            assert '<span class="user">jason</span>' in html and "Sign out" in html
            logout = browser.get(
                bookinfo_v2.url("productpage", "/logout"), allow_redirects=False, timeout=5
            )
            assert logout.status_code == 302
            assert logout.headers["Location"] == "/productpage"
            html = page(bookinfo_v2, browser).text
            assert "Sign in" in html and '<span class="user">' not in html

    def test_the_login_form_posts_username_and_passwd(self, bookinfo_v1):
        html = page(bookinfo_v1).text
        assert '<form method="post" action="login">' in html
        assert 'name="username"' in html and 'name="passwd"' in html

    def test_get_login_is_405(self, bookinfo_v1):
        assert requests.get(bookinfo_v1.url("productpage", "/login"), timeout=5).status_code == 405

    def test_a_second_productpage_process_reads_the_session(self, bookinfo_v1, upstream):
        """Replicas share the session key: a cookie from one works in another process."""
        peer = upstream(reply=Reply(body="{}"))
        environ = {
            **os.environ,
            "DETAILS_HOSTNAME": HOST,
            "DETAILS_SERVICE_PORT": str(peer.port),
            "REVIEWS_HOSTNAME": HOST,
            "REVIEWS_SERVICE_PORT": str(peer.port),
        }
        with ServiceProcess("productpage", environ) as other:
            login = requests.post(
                bookinfo_v1.url("productpage", "/login"),
                data={"username": "jason"},
                allow_redirects=False,
                timeout=5,
            )
            response = requests.get(other.url("/productpage"), cookies=login.cookies, timeout=10)
        assert '<span class="user">jason</span>' in response.text
        assert {call.headers.get("end-user") for call in peer.requests} == {"jason"}

    def test_a_session_signed_with_another_key_is_ignored(self, serve, upstream):
        peer = upstream(reply=Reply(body="{}"))
        fields = settings_for(details=peer.port, reviews=peer.port)
        one = serve(productpage.create_app(Settings(secret_key="one", **fields)))
        two = serve(productpage.create_app(Settings(secret_key="two", **fields)))
        login = requests.post(
            one.url("/login"), data={"username": "jason"}, allow_redirects=False, timeout=5
        )
        response = requests.get(two.url("/productpage"), cookies=login.cookies, timeout=10)
        assert response.status_code == 200
        assert all("end-user" not in call.headers for call in peer.requests)


class TestApi:
    def test_products(self, bookinfo_v1):
        response = requests.get(bookinfo_v1.url("productpage", "/api/v1/products"), timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.text == PRODUCTS_BODY

    def test_product_re_serialises_details(self, bookinfo_v1):
        response = requests.get(bookinfo_v1.url("productpage", "/api/v1/products/0"), timeout=5)
        assert response.status_code == 200
        assert response.text == DETAILS_BODY

    @pytest.mark.parametrize("product_id", ["1", "2", "3"])
    def test_other_products_answer_200(self, bookinfo_v1, product_id):
        # Istio's rate-limiting task requests /api/v1/products/1..3 and expects 200s.
        url = bookinfo_v1.url("productpage", f"/api/v1/products/{product_id}")
        assert requests.get(url, timeout=5).status_code == 200

    def test_product_ratings(self, bookinfo_v1):
        url = bookinfo_v1.url("productpage", "/api/v1/products/0/ratings")
        response = requests.get(url, timeout=5)
        assert response.text == '{"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}'

    def test_product_reviews(self, bookinfo_v3):
        url = bookinfo_v3.url("productpage", "/api/v1/products/0/reviews")
        body = requests.get(url, timeout=5).text
        assert body.startswith(
            '{"id": "0", "podname": "reviews-v3-test", "clustername": "null", "reviews": '
            '[{"reviewer": "Reviewer1", "text": "An extremely entertaining play'
        )
        assert '"rating": {"stars": 5, "color": "red"}' in body

    def test_non_numeric_product_is_details_400_with_productpage_message(self, bookinfo_v1):
        response = requests.get(bookinfo_v1.url("productpage", "/api/v1/products/abc"), timeout=5)
        assert response.status_code == 400
        assert response.text == (
            '{"error": "Sorry, product details are currently unavailable for this book."}'
        )

    def test_non_numeric_product_reviews_is_404_after_two_attempts(self, serve, upstream):
        peer = upstream(reply=Reply(status=404, body="Not Found", content_type="text/plain"))
        app = serve(productpage.create_app(Settings(**settings_for(reviews=peer.port))))
        response = requests.get(app.url("/api/v1/products/abc/reviews"), timeout=10)
        assert response.status_code == 404
        assert response.text == (
            '{"error": "Sorry, product reviews are currently unavailable for this book."}'
        )
        assert [call.path for call in peer.requests] == ["/reviews/abc", "/reviews/abc"]

    def test_ids_are_escaped_into_one_path_segment(self, serve, upstream):
        peer = upstream(reply=Reply(body="{}"))
        app = serve(productpage.create_app(Settings(**settings_for(details=peer.port))))
        requests.get(app.url("/api/v1/products/1%3Fx=2%23"), timeout=10)
        assert [call.path for call in peer.requests] == ["/details/1%3Fx%3D2%23"]


def test_metrics_count_call_outcomes(serve, upstream):
    details = upstream(reply=Reply(body=DETAILS_BODY))
    reviews = upstream(reply=Reply(status=503, body="{}"))
    app = serve(
        productpage.create_app(Settings(**settings_for(details=details.port, reviews=reviews.port)))
    )
    for _ in range(3):
        requests.get(app.url("/productpage"), timeout=10)
    response = requests.get(app.url("/metrics"), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert 'request_result_total{destination_app="details",response_code="200"} 3.0' in text
    assert 'request_result_total{destination_app="reviews",response_code="503"} 3.0' in text
    assert len(reviews.requests) == 6  # two attempts per page


def test_flood_factor_sends_extra_reviews_calls(serve, upstream):
    peer = upstream(reply=Reply(body="{}"))
    fields = settings_for(details=peer.port, reviews=peer.port)
    app = serve(productpage.create_app(Settings(flood_factor=3, **fields)))
    requests.get(app.url("/productpage"), timeout=10)
    assert [call.path for call in peer.requests] == ["/details/0"] + ["/reviews/0"] * 4


def test_static_stylesheet_is_served(bookinfo_v1):
    html = page(bookinfo_v1).text
    href = re.search(r'href="(/static/[^"]+\.css)"', html).group(1)
    response = requests.get(bookinfo_v1.url("productpage", href), timeout=5)
    assert response.status_code == 200
    assert "text/css" in response.headers["Content-Type"]


def test_unknown_paths_are_404(bookinfo_v1):
    assert requests.get(bookinfo_v1.url("productpage", "/nope"), timeout=5).status_code == 404
