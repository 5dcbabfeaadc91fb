"""reviews: the byte-exact JSON of v1/v2/v3, its ratings call, and its failure handling."""

from __future__ import annotations

import time

import pytest
import requests

from bookinfo.config import Settings
from bookinfo.propagation import FORWARDED_HEADERS
from bookinfo.reviews import create_app
from live import Reply, closed_port, settings_for

TEXT1 = "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"
TEXT2 = (
    "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays "
    "by Shakespeare."
)


def expected_body(pod: str, rating1: str = "", rating2: str = "", product_id: str = "0") -> str:
    """Istio's Java service's output, spelled out by hand so the test does not share the code."""
    return (
        f'{{"id": "{product_id}","podname": "{pod}","clustername": "null","reviews": ['
        f'{{  "reviewer": "Reviewer1",  "text": "{TEXT1}"{rating1}}},'
        f'{{  "reviewer": "Reviewer2",  "text": "{TEXT2}"{rating2}}}]}}'
    )


def stars(n: int, color: str) -> str:
    return f', "rating": {{"stars": {n}, "color": "{color}"}}'


RATINGS = '{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}'
UNAVAILABLE = ', "rating": {"error": "Ratings service is currently unavailable"}'


def test_health(bookinfo_v1):
    response = requests.get(bookinfo_v1.url("reviews", "/health"), timeout=5)
    assert response.status_code == 200
    assert response.text == '{"status": "Reviews is healthy"}'


def test_v1_is_byte_exact(bookinfo_v1):
    response = requests.get(bookinfo_v1.url("reviews", "/reviews/0"), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.text == expected_body("reviews-v1-test")


def test_v2_has_black_stars_from_ratings(bookinfo_v2):
    response = requests.get(bookinfo_v2.url("reviews", "/reviews/0"), timeout=5)
    assert response.text == expected_body("reviews-v2-test", stars(5, "black"), stars(4, "black"))


def test_v3_has_red_stars_from_ratings(bookinfo_v3):
    response = requests.get(bookinfo_v3.url("reviews", "/reviews/0"), timeout=5)
    assert response.text == expected_body("reviews-v3-test", stars(5, "red"), stars(4, "red"))


def test_posted_ratings_show_up_in_reviews(serve):
    from bookinfo import ratings

    ratings_app = serve(ratings.create_app(Settings()))
    requests.post(ratings_app.url("/ratings/7"), data='{"Reviewer1":1,"Reviewer2":3}', timeout=5)
    reviews = serve(
        create_app(
            Settings(hostname="r", enable_ratings=True, **settings_for(ratings=ratings_app.port))
        )
    )
    response = requests.get(reviews.url("/reviews/7"), timeout=5)
    assert response.text == expected_body("r", stars(1, "black"), stars(3, "black"), "7")


@pytest.mark.parametrize(
    ("segment", "product_id"), [("+7", "7"), ("007", "7"), ("-2147483648", "-2147483648")]
)
def test_ids_are_java_ints(bookinfo_v1, segment, product_id):
    response = requests.get(bookinfo_v1.url("reviews", f"/reviews/{segment}"), timeout=5)
    assert response.status_code == 200
    assert response.json()["id"] == product_id


@pytest.mark.parametrize("segment", ["abc", "1.5", "2147483648", "0x1", " 1"])
def test_non_integer_ids_are_404(bookinfo_v1, segment):
    response = requests.get(bookinfo_v1.url("reviews", f"/reviews/{segment}"), timeout=5)
    assert response.status_code == 404


def test_unset_hostname_and_cluster_print_null(serve):
    reviews = serve(create_app(Settings()))
    body = requests.get(reviews.url("/reviews/0"), timeout=5).json()
    assert body["podname"] == "null"
    assert body["clustername"] == "null"


def test_cluster_name_is_reported(serve):
    reviews = serve(create_app(Settings.from_environ({"CLUSTER_NAME": "kind-istiolab"})))
    assert (
        requests.get(reviews.url("/reviews/0"), timeout=5).json()["clustername"] == "kind-istiolab"
    )


def reviews_against(serve, ratings_port: int, star_color: str = "black"):
    return serve(
        create_app(
            Settings(
                hostname="pod",
                enable_ratings=True,
                star_color=star_color,
                **settings_for(ratings=ratings_port),
            )
        )
    )


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=503, body='{"error":"Service unavailable"}'),
        Reply(status=500, body="oops", content_type="text/plain"),
        Reply(status=200, body="not json"),
        Reply(status=200, body='{"id":0}'),
        Reply(hang_up=True),
    ],
    ids=["503", "500-text", "200-not-json", "200-no-ratings", "hang-up"],
)
def test_ratings_failure_gives_the_error_per_review_and_still_200(serve, upstream, reply):
    ratings = upstream(reply=reply)
    reviews = reviews_against(serve, ratings.port)
    response = requests.get(reviews.url("/reviews/0"), timeout=15)
    assert response.status_code == 200
    assert response.text == expected_body("pod", UNAVAILABLE, UNAVAILABLE)


def test_ratings_down_gives_the_error_per_review(serve):
    reviews = reviews_against(serve, closed_port())
    response = requests.get(reviews.url("/reviews/0"), timeout=15)
    assert response.status_code == 200
    assert response.text == expected_body("pod", UNAVAILABLE, UNAVAILABLE)


def test_a_reviewer_missing_from_ratings_gets_the_error(serve, upstream):
    ratings = upstream(reply=Reply(body='{"id":0,"ratings":{"Reviewer2":2}}'))
    reviews = reviews_against(serve, ratings.port)
    response = requests.get(reviews.url("/reviews/0"), timeout=5)
    assert response.text == expected_body("pod", UNAVAILABLE, stars(2, "black"))


def test_calls_ratings_with_the_propagated_headers(serve, upstream):
    ratings = upstream(reply=Reply(body=RATINGS))
    reviews = reviews_against(serve, ratings.port)
    sent = {name: f"value-of-{name}" for name in FORWARDED_HEADERS}
    requests.get(reviews.url("/reviews/0"), headers={**sent, "x-private": "no"}, timeout=5)
    (call,) = ratings.requests
    assert call.path == "/ratings/0"
    assert call.headers["accept"] == "application/json"
    for name, value in sent.items():
        assert call.headers.get(name) == value, name
    assert "x-private" not in call.headers


@pytest.mark.slow
def test_v3_gives_up_on_ratings_after_2_5_s(serve, upstream):
    ratings = upstream(reply=Reply(body=RATINGS, delay=6))
    reviews = reviews_against(serve, ratings.port, star_color="red")
    started = time.monotonic()
    response = requests.get(reviews.url("/reviews/0"), timeout=15)
    elapsed = time.monotonic() - started
    assert response.text == expected_body("pod", UNAVAILABLE, UNAVAILABLE)
    assert 2.4 <= elapsed < 3.5


@pytest.mark.slow
def test_v2_waits_up_to_10_s_for_ratings(serve, upstream):
    ratings = upstream(reply=Reply(body=RATINGS, delay=12))
    reviews = reviews_against(serve, ratings.port, star_color="black")
    started = time.monotonic()
    response = requests.get(reviews.url("/reviews/0"), timeout=20)
    elapsed = time.monotonic() - started
    assert response.text == expected_body("pod", UNAVAILABLE, UNAVAILABLE)
    assert 9.9 <= elapsed < 11.5


@pytest.mark.slow
def test_v2_shows_stars_when_ratings_answers_within_10_s(serve, upstream):
    ratings = upstream(reply=Reply(body=RATINGS, delay=3))
    reviews = reviews_against(serve, ratings.port, star_color="black")
    response = requests.get(reviews.url("/reviews/0"), timeout=20)
    assert response.text == expected_body("pod", stars(5, "black"), stars(4, "black"))
