"""Header propagation: the lists, productpage's B3 handling, and what each caller really sends."""

from __future__ import annotations

import pytest
import requests

from bookinfo import productpage, reviews
from bookinfo.config import Settings
from bookinfo.propagation import (
    FORWARDED_HEADERS,
    PRODUCTPAGE_FORWARDED_HEADERS,
    TRACE_CONTEXT_HEADERS,
    b3_headers,
    forward_headers,
)
from live import Reply, settings_for

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def test_the_lists_match_istios_bookinfo():
    assert len(FORWARDED_HEADERS) == 20
    assert "end-user" in FORWARDED_HEADERS
    assert set(PRODUCTPAGE_FORWARDED_HEADERS) == {
        "x-request-id",
        "x-ot-span-context",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
        "traceparent",
        "tracestate",
        "x-cloud-trace-context",
        "grpc-trace-bin",
        "sw8",
        "user-agent",
        "cookie",
        "authorization",
        "jwt",
    }


def test_forward_headers_copies_only_listed_headers():
    assert forward_headers({"x-request-id": "1", "x-other": "2"}) == {"x-request-id": "1"}


@pytest.mark.parametrize(
    ("incoming", "expected"),
    [
        # Multi headers pass through, sampled normalised to "1"/"0".
        (
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
        ),
        (
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "true"},
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
        ),
        (
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN},
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "0"},
        ),
        # The debug flag means sampled; parent span id and flags are not re-sent.
        (
            {
                "x-b3-traceid": TRACE,
                "x-b3-spanid": SPAN,
                "x-b3-flags": "1",
                "x-b3-parentspanid": SPAN,
            },
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
        ),
        # A 64-bit trace id is padded to 128 bits.
        (
            {"x-b3-traceid": "48485a3953bb6124", "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
            {
                "x-b3-traceid": "000000000000000048485a3953bb6124",
                "x-b3-spanid": SPAN,
                "x-b3-sampled": "1",
            },
        ),
        # The single b3 header becomes multi headers.
        (
            {"b3": f"{TRACE}-{SPAN}-d"},
            {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
        ),
        # Without valid ids nothing is sent and the mesh starts a new trace.
        ({"x-b3-traceid": "xyz", "x-b3-spanid": SPAN}, {}),
        ({"x-b3-traceid": TRACE}, {}),
        ({"x-b3-traceid": "0" * 32, "x-b3-spanid": SPAN}, {}),
        ({"b3": "0"}, {}),
        ({}, {}),
    ],
)
def test_productpage_b3_handling(incoming, expected):
    assert b3_headers(incoming) == expected


@pytest.fixture
def productpage_against(serve, upstream):
    """productpage whose three peers are one recording stand-in."""
    peer = upstream(reply=Reply(body='{"id": 0}'))
    app = productpage.create_app(
        Settings(**settings_for(details=peer.port, reviews=peer.port, ratings=peer.port))
    )
    return serve(app), peer


@pytest.mark.parametrize(
    "path", ["/productpage", "/api/v1/products/0", "/api/v1/products/0/ratings"]
)
def test_productpage_propagates_to_every_call(productpage_against, path):
    live, peer = productpage_against
    sent = {name: f"value-of-{name}" for name in PRODUCTPAGE_FORWARDED_HEADERS}
    sent.update({"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"})
    sent.update({"x-b3-parentspanid": SPAN, "end-user": "mallory", "x-private": "no"})
    assert requests.get(live.url(path), headers=sent, timeout=10).status_code == 200
    assert peer.requests
    for call in peer.requests:
        for name in PRODUCTPAGE_FORWARDED_HEADERS:
            assert call.headers.get(name) == f"value-of-{name}", (call.path, name)
        assert call.headers["x-b3-traceid"] == TRACE
        assert call.headers["x-b3-spanid"] == SPAN
        assert call.headers["x-b3-sampled"] == "1"
        # Not copied: the parent span, an end-user the client made up, anything unlisted.
        assert "x-b3-parentspanid" not in call.headers
        assert "end-user" not in call.headers
        assert "x-private" not in call.headers


def test_productpage_sends_the_logged_in_user_as_end_user(productpage_against):
    live, peer = productpage_against
    with requests.Session() as browser:
        browser.post(live.url("/login"), data={"username": "jason", "passwd": "x"}, timeout=5)
        browser.get(live.url("/productpage"), timeout=10)
    assert {call.path for call in peer.requests} == {"/details/0", "/reviews/0"}
    assert all(call.headers["end-user"] == "jason" for call in peer.requests)


# --- PROPAGATE_TRACE_HEADERS=false: a service that forgets the trace context ---------------------


def test_without_trace_context_only_the_trace_headers_are_dropped():
    incoming = {name: f"value-of-{name}" for name in FORWARDED_HEADERS}
    kept = forward_headers(incoming, trace_context=False)
    assert set(kept) == set(FORWARDED_HEADERS) - TRACE_CONTEXT_HEADERS
    assert {"end-user", "user-agent", "cookie", "authorization", "jwt"} <= set(kept)
    assert not set(kept) & {"x-request-id", "x-b3-traceid", "traceparent"}


@pytest.mark.parametrize("service", ["productpage", "reviews"])
def test_a_service_told_not_to_propagate_sends_no_trace_context(serve, upstream, service):
    peer = upstream(reply=Reply(body='{"id": 0, "ratings": {}}'))
    settings = Settings(
        **settings_for(details=peer.port, reviews=peer.port, ratings=peer.port),
        propagate_trace_headers=False,
        enable_ratings=True,
    )
    module = productpage if service == "productpage" else reviews
    live = serve(module.create_app(settings))
    path = "/productpage" if service == "productpage" else "/reviews/0"
    sent = {"x-request-id": "r-1", "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"}

    assert requests.get(live.url(path), headers={**sent, "user-agent": "ua/1"}, timeout=10).ok
    assert peer.requests
    for call in peer.requests:
        assert not set(call.headers) & TRACE_CONTEXT_HEADERS, call.headers
        assert call.headers["user-agent"] == "ua/1"  # everything else is still copied
