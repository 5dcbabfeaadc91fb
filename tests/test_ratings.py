"""ratings: v1 with its in-memory POST override, id parsing like parseInt, and the demo modes."""

from __future__ import annotations

import random

import pytest
import requests

from bookinfo.config import ConfigError, Settings
from bookinfo.ratings import create_app


@pytest.fixture
def ratings(serve):
    return serve(create_app(Settings()))


def get(live, path, **kwargs):
    return requests.get(live.url(path), timeout=5, **kwargs)


def test_health(ratings):
    response = get(ratings, "/health")
    assert response.status_code == 200
    assert response.text == '{"status":"Ratings is healthy"}'


def test_ratings_are_byte_exact(ratings):
    response = get(ratings, "/ratings/7")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.text == '{"id":7,"ratings":{"Reviewer1":5,"Reviewer2":4}}'


def test_post_overrides_the_ratings_of_that_id_only(ratings):
    posted = requests.post(
        ratings.url("/ratings/7"), data='{"Reviewer1":1,"Reviewer2":1}', timeout=5
    )
    assert posted.status_code == 200
    assert posted.text == '{"id":7,"ratings":{"Reviewer1":1,"Reviewer2":1}}'
    assert get(ratings, "/ratings/7").text == '{"id":7,"ratings":{"Reviewer1":1,"Reviewer2":1}}'
    assert get(ratings, "/ratings/8").text == '{"id":8,"ratings":{"Reviewer1":5,"Reviewer2":4}}'


@pytest.mark.parametrize(
    ("path", "product_id"),
    [
        ("/ratings/0", 0),
        ("/ratings/8?x=1", 8),
        ("/ratings/7abc", 7),
        ("/ratings/0x10", 16),
        ("/ratings/-1", -1),
    ],
)
def test_ids_are_parsed_like_parse_int(ratings, path, product_id):
    response = get(ratings, path)
    assert response.status_code == 200
    assert response.json()["id"] == product_id


@pytest.mark.parametrize("path", ["/ratings/abc", "/ratings/", "/ratings/7/x"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_non_numeric_id_is_400(ratings, path, method):
    response = requests.request(method, ratings.url(path), data="{}", timeout=5)
    assert response.status_code == 400
    assert response.text == '{"error":"please provide numeric product ID"}'


@pytest.mark.parametrize("body", ["", "{", "NaN", "{'a': 1}"])
def test_post_needs_json(ratings, body):
    response = requests.post(ratings.url("/ratings/1"), data=body, timeout=5)
    assert response.status_code == 400
    assert response.text == '{"error":"please provide valid ratings JSON"}'


@pytest.mark.parametrize("path", ["/", "/ratings", "/rating/1", "/health/x"])
def test_other_paths_are_404_with_an_empty_body(ratings, path):
    response = get(ratings, path)
    assert response.status_code == 404
    assert response.text == ""


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_refused_at_once(ratings, method):
    # Istio's Node service never answers these (the request hangs); ours says 405 right away.
    response = requests.request(method, ratings.url("/ratings/1"), timeout=5)
    assert response.status_code == 405


def test_v2_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="database-backed"):
        create_app(Settings(service_version="v2"))


class FakeClock:
    """A clock the test moves by hand, for the modes that flip on a timer."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_v_unavailable_flips_every_period(serve):
    clock = FakeClock()
    live = serve(create_app(Settings(service_version="v-unavailable"), clock=clock))
    assert get(live, "/ratings/0").status_code == 200
    clock.now += 60
    unavailable = get(live, "/ratings/0")
    assert unavailable.status_code == 503
    assert unavailable.text == '{"error":"Service unavailable"}'
    assert get(live, "/health").status_code == 200  # only the answers fail, not the health check
    clock.now += 60
    assert get(live, "/ratings/0").status_code == 200


def test_v_unhealthy_flips_health_and_answers_together(serve):
    clock = FakeClock()
    live = serve(create_app(Settings(service_version="v-unhealthy"), clock=clock))
    assert get(live, "/health").status_code == 200
    assert get(live, "/ratings/0").status_code == 200
    clock.now += 15 * 60
    unhealthy = get(live, "/health")
    assert unhealthy.status_code == 500
    assert unhealthy.text == '{"status":"Ratings is not healthy"}'
    assert get(live, "/ratings/0").status_code == 503
    clock.now += 15 * 60
    assert get(live, "/health").status_code == 200


def test_v_faulty_fails_about_half_of_the_requests(serve):
    live = serve(create_app(Settings(service_version="v-faulty"), rng=random.Random(7)))
    codes = [get(live, "/ratings/0").status_code for _ in range(200)]
    assert set(codes) == {200, 503}
    # Binomial(200, 0.5): 70..130 holds with probability > 0.9999.
    assert 70 <= codes.count(503) <= 130


def test_v_delayed_delays_about_half_of_the_requests(serve):
    settings = Settings(service_version="v-delayed", demo_delay_seconds=0.2)
    live = serve(create_app(settings, rng=random.Random(11)))
    slow = 0
    for _ in range(40):
        response = get(live, "/ratings/0")
        assert response.status_code == 200
        slow += response.elapsed.total_seconds() >= 0.2
    assert 8 <= slow <= 32  # Binomial(40, 0.5): outside this with probability < 0.0003


def test_v_delayed_uses_seven_seconds_by_default():
    assert Settings().demo_delay_seconds == 7.0
    assert Settings().unavailable_period_seconds == 60.0
    assert Settings().unhealthy_period_seconds == 900.0
