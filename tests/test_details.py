"""details: routes, ids parsed like Ruby's Integer(), and v2's external book service."""

from __future__ import annotations

import json

import pytest
import requests

from bookinfo.config import Settings
from bookinfo.details import create_app
from bookinfo.propagation import FORWARDED_HEADERS
from live import HOST, Reply, closed_port

V1_BODY = (
    '{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,'
    '"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}'
)


@pytest.fixture(scope="module")
def details_v1():
    from live import LiveApp

    live = LiveApp(create_app(Settings()))
    yield live
    live.close()


def test_health(details_v1):
    response = requests.get(details_v1.url("/health"), timeout=5)
    assert response.status_code == 200
    assert response.text == '{"status":"Details is healthy"}'
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_book_zero_is_byte_exact(details_v1, method):
    response = requests.request(method, details_v1.url("/details/0"), timeout=5)
    assert response.status_code == 200
    assert response.text == V1_BODY
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("segment", "expected_id"),
    [("7", 7), ("010", 8), ("0x1A", 26), ("0b101", 5), ("1_000", 1000), ("-3", -3), ("0/", 0)],
)
def test_ids_are_parsed_like_ruby_integer(details_v1, segment, expected_id):
    body = requests.get(details_v1.url(f"/details/{segment}"), timeout=5).json()
    assert body["id"] == expected_id
    assert body["publisher"] == "PublisherA"


@pytest.mark.parametrize(
    "path", ["/details", "/details/", "/details/abc", "/details/08", "/details/1x"]
)
def test_non_numeric_id_is_400(details_v1, path):
    response = requests.get(details_v1.url(path), timeout=5)
    assert response.status_code == 400
    assert response.text == '{"error":"please provide numeric product id"}'


def test_other_paths_are_404(details_v1):
    assert requests.get(details_v1.url("/book/0"), timeout=5).status_code == 404


GOOGLE_BOOKS_ANSWER = {
    "items": [
        {
            "volumeInfo": {
                "authors": ["William Shakespeare"],
                "publishedDate": "2002-05-01",
                "printType": "BOOK",
                "pageCount": 80,
                "publisher": "Dover Publications",
                "language": "en",
                "industryIdentifiers": [
                    {"type": "ISBN_10", "identifier": "0486424618"},
                    {"type": "ISBN_13", "identifier": "9780486424613"},
                ],
            }
        }
    ]
}


def external_settings(port: int, **fields) -> Settings:
    return Settings(
        enable_external_book_service=True,
        do_not_encrypt=True,
        external_book_host=HOST,
        external_book_port=port,
        **fields,
    )


def test_v2_maps_the_external_book(serve, upstream):
    books = upstream(reply=Reply(body=json.dumps(GOOGLE_BOOKS_ANSWER)))
    details = serve(create_app(external_settings(books.port)))
    response = requests.get(details.url("/details/3"), timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "id": 3,
        "author": "William Shakespeare",
        "year": "2002-05-01",
        "type": "paperback",
        "pages": 80,
        "publisher": "Dover Publications",
        "language": "English",
        "ISBN-10": "0486424618",
        "ISBN-13": "9780486424613",
    }
    (call,) = books.requests
    assert call.path == "/books/v1/volumes?q=isbn:0486424618"
    assert call.headers["host"] == f"{HOST}:{books.port}"


def test_v2_uses_port_80_without_tls_when_asked():
    settings = Settings(enable_external_book_service=True, do_not_encrypt=True)
    assert settings.external_book_port is None  # the call then goes to http://...:80


def test_v2_forwards_the_propagated_headers(serve, upstream):
    books = upstream(reply=Reply(body=json.dumps(GOOGLE_BOOKS_ANSWER)))
    details = serve(create_app(external_settings(books.port)))
    sent = {name: f"value-of-{name}" for name in FORWARDED_HEADERS}
    requests.get(details.url("/details/0"), headers={**sent, "x-not-forwarded": "1"}, timeout=10)
    (call,) = books.requests
    for name, value in sent.items():
        assert call.headers.get(name) == value, name
    assert "x-not-forwarded" not in call.headers


def test_v2_unreachable_outside_world_is_a_clean_400(serve):
    port = closed_port()
    details = serve(create_app(external_settings(port)))
    response = requests.get(details.url("/details/0"), timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(f"Failed to open TCP connection to {HOST}:{port}")
    assert "Traceback" not in response.text


def test_v2_unexpected_answer_is_a_clean_400(serve, upstream):
    books = upstream(reply=Reply(status=403, body='{"error": "egress blocked"}'))
    details = serve(create_app(external_settings(books.port)))
    response = requests.get(details.url("/details/0"), timeout=10)
    assert response.status_code == 400
    assert "HTTP 403" in response.json()["error"]


def test_v2_gives_up_on_a_slow_service_after_its_timeout(serve, upstream):
    books = upstream(reply=Reply(body="{}", delay=3))
    details = serve(create_app(external_settings(books.port, external_book_timeout_seconds=0.5)))
    response = requests.get(details.url("/details/0"), timeout=10)
    assert response.status_code == 400
    assert response.elapsed.total_seconds() < 2.5
