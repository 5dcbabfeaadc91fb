"""What the page shows when a dependency is down, slow or failing (the contract's section 3).

Real productpage, details, reviews and ratings on loopback; the one dependency under test is a
stand-in that refuses, stalls or errors. The page must always be a 200 with the title and the
book, show exactly the documented markers, and take the documented time: productpage gives each
call 3 s and reviews two attempts; reviews v2 gives ratings 10 s and v3 only 2.5 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import requests

from conftest import Bookinfo
from live import Reply, closed_port

DETAILS_ERROR = (
    "Error fetching product details",
    "Sorry, product details are currently unavailable",
)
REVIEWS_ERROR = (
    "Error fetching product reviews",
    "Sorry, product reviews are currently unavailable",
)
RATINGS_ERROR = "Ratings service is currently unavailable"
STAR = "glyphicon glyphicon-star"
RATINGS = '{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}'


@dataclass
class Outcome:
    html: str
    seconds: float


@pytest.fixture
def visit(upstream):
    """Build Bookinfo with one dependency replaced as described, and load the page once."""
    stacks: list[Bookinfo] = []

    def load(
        replace: str | None = None, reply: Reply | None = None, reviews: str = "v1"
    ) -> Outcome:
        ports: dict[str, int] = {}
        if replace:
            ports[f"{replace}_port"] = upstream(reply=reply).port if reply else closed_port()
        stack = Bookinfo(reviews, **ports)
        stacks.append(stack)
        started = time.monotonic()
        response = requests.get(stack.url("productpage", "/productpage"), timeout=20)
        seconds = time.monotonic() - started
        assert response.status_code == 200
        assert "<title>Simple Bookstore App</title>" in response.text
        assert "William Shakespeare" in response.text
        assert "Traceback" not in response.text
        return Outcome(response.text, seconds)

    yield load
    for stack in stacks:
        stack.close()


def assert_details_ok(html: str) -> None:
    assert "Book Details" in html and "PublisherA" in html
    assert DETAILS_ERROR[0] not in html


def assert_reviews_ok(html: str) -> None:
    assert "Book Reviews" in html and "Reviews served by:" in html
    assert REVIEWS_ERROR[0] not in html


@pytest.mark.parametrize(
    "reply",
    [
        None,
        Reply(status=503, body="{}"),
        Reply(status=403, body="RBAC: access denied"),
        Reply(hang_up=True),
    ],
    ids=["down", "503", "403", "hang-up"],
)
def test_details_failing_fast(visit, reply):
    outcome = visit("details", reply)
    assert all(marker in outcome.html for marker in DETAILS_ERROR)
    assert "Book Details" not in outcome.html
    assert_reviews_ok(outcome.html)
    assert outcome.seconds < 1.5


@pytest.mark.slow
def test_details_slow_is_given_up_after_3_s(visit):
    outcome = visit("details", Reply(body="{}", delay=5))
    assert all(marker in outcome.html for marker in DETAILS_ERROR)
    assert_reviews_ok(outcome.html)
    assert 2.9 <= outcome.seconds < 4.0


@pytest.mark.parametrize(
    "reply",
    [None, Reply(status=503, body="{}"), Reply(status=500, body="oops"), Reply(hang_up=True)],
    ids=["down", "503", "500", "hang-up"],
)
def test_reviews_failing_fast(visit, reply):
    outcome = visit("reviews", reply)
    assert all(marker in outcome.html for marker in REVIEWS_ERROR)
    assert "Book Reviews" not in outcome.html
    assert_details_ok(outcome.html)
    assert outcome.seconds < 1.5


@pytest.mark.slow
def test_reviews_slow_costs_two_attempts_of_3_s(visit):
    outcome = visit("reviews", Reply(body="{}", delay=5))
    assert all(marker in outcome.html for marker in REVIEWS_ERROR)
    assert_details_ok(outcome.html)
    assert 5.9 <= outcome.seconds < 7.5


@pytest.mark.parametrize("reviews", ["v2", "v3"])
@pytest.mark.parametrize(
    "reply",
    [None, Reply(status=503, body='{"error":"Service unavailable"}'), Reply(status=500, body="{}")],
    ids=["down", "503", "500"],
)
def test_ratings_failing_fast(visit, reviews, reply):
    outcome = visit("ratings", reply, reviews=reviews)
    assert outcome.html.count(RATINGS_ERROR) == 2
    assert STAR not in outcome.html
    assert_reviews_ok(outcome.html)
    assert_details_ok(outcome.html)
    assert outcome.seconds < 1.5


@pytest.mark.slow
def test_ratings_delayed_7_s_with_reviews_v2_loses_the_reviews_after_6_s(visit):
    """The fault-injection task's "bug": productpage gives up (3 s x 2) before reviews (10 s)."""
    outcome = visit("ratings", Reply(body=RATINGS, delay=7), reviews="v2")
    assert all(marker in outcome.html for marker in REVIEWS_ERROR)
    assert_details_ok(outcome.html)
    assert 5.9 <= outcome.seconds < 7.5


@pytest.mark.slow
def test_ratings_delayed_7_s_with_reviews_v3_shows_reviews_after_2_5_s(visit):
    outcome = visit("ratings", Reply(body=RATINGS, delay=7), reviews="v3")
    assert outcome.html.count(RATINGS_ERROR) == 2
    assert_reviews_ok(outcome.html)
    assert 2.4 <= outcome.seconds < 3.5


@pytest.mark.slow
def test_ratings_delayed_below_2_5_s_with_reviews_v3_shows_red_stars(visit):
    outcome = visit("ratings", Reply(body=RATINGS, delay=1), reviews="v3")
    assert outcome.html.count(STAR) == 9
    assert "color: red" in outcome.html
    assert 0.9 <= outcome.seconds < 2.0
