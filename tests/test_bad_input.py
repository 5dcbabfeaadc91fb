"""Bad input against the real services: whatever a client sends, nothing breaks.

Hypothesis throws arbitrary request targets, product ids, methods, headers, login forms, cookies
and ratings bodies at the four real services, wired together on loopback (the module-scoped
`bookinfo_v3` stack: productpage -> details, productpage -> reviews v3 -> ratings). Every answer
must satisfy the same properties:

- no 5xx: with every service up, a server error is our bug (productpage's API mirrors a downstream
  status, so a 5xx there is a downstream bug), and GET /productpage is always 200;
- no Python traceback in any body;
- every JSON body is strict JSON (no NaN or Infinity);
- every answer is fast: well under productpage's documented worst case of 2 x 3 s.

Requests go out as raw bytes over a socket, so that what the server sees is exactly what was
generated: no client library normalises `..`, double slashes or percent-encoding on the way.

Inputs that once broke a service are pinned, one by one, by the regression tests at the end.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from bookinfo import ratings
from bookinfo.config import Settings
from bookinfo.propagation import FORWARDED_HEADERS
from bookinfo.ratings import DEFAULT_RATINGS
from conftest import Bookinfo
from live import HOST, LiveApp

# A client gives up after this long; productpage's documented worst case is 2 attempts x 3 s.
CLIENT_TIMEOUT = 8.0
# With every service up nothing waits on a timeout, so an answer takes far less than this.
HEALTHY_SECONDS = 3.0

SERVICES = ("productpage", "details", "reviews", "ratings")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "')

# Moderate example counts keep the whole module within a minute on two cores. No example
# database: every run explores afresh, and nothing is written into the checkout.
EXAMPLES = settings(max_examples=100, deadline=None, database=None)
FEWER_EXAMPLES = settings(max_examples=50, deadline=None, database=None)


# --- Talking raw HTTP ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    method: str
    target: bytes
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:  # what a failing example shows
        return (
            f"<{self.method} {self.target[:200]!r} -> {self.status} in {self.seconds:.2f} s: "
            f"{self.body[:300]!r}>"
        )


def send(
    port: int,
    method: str,
    target: bytes,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
) -> Answer:
    """Send one request exactly as given, and read the whole answer."""
    lines = [
        f"{method} ".encode() + target + b" HTTP/1.1",
        f"Host: {HOST}:{port}".encode(),
        b"Connection: close",
    ]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}".encode())
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            data = response.read()
        finally:
            response.close()
    return Answer(method, target, response.status, response.msg, data, time.monotonic() - started)


def port_of(stack: Bookinfo, service: str) -> int:
    return stack.apps[service].port


# --- The properties -----------------------------------------------------------------------------


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> object:
    return json.loads(text, parse_constant=_reject_constant)


def assert_sound(answer: Answer, *sent: object) -> None:
    """The properties every answer has: no 5xx, no traceback, strict JSON, fast.

    `sent` is whatever of the request the service may echo back: a marker found in the body is a
    traceback only if the client did not send it in the first place.
    """
    assert answer.status < 500, answer
    assert_no_traceback(answer.text, *sent)
    if answer.headers.get_content_type() == "application/json" and answer.body:
        try:
            strict_json(answer.text)
        except ValueError as exc:
            pytest.fail(f"not strict JSON ({exc}): {answer!r}")
    assert answer.seconds < HEALTHY_SECONDS, answer


def assert_no_traceback(body: str, *sent: object) -> None:
    for marker in TRACEBACK_MARKERS:
        if marker in body:
            assert any(marker in str(item) for item in sent), f"{marker!r} in {body[:2000]!r}"


def assert_page(response: requests.Response, seconds: float, *sent: object) -> None:
    """GET /productpage with every service up: 200, with both halves of the page filled in."""
    assert response.status_code == 200, response.text[:500]
    assert_no_traceback(response.text, *sent)
    assert seconds < HEALTHY_SECONDS
    assert "Book Details" in response.text
    assert "Book Reviews" in response.text
    assert "Error fetching" not in response.text


def timed_get(
    session: requests.Session, url: str, **kwargs: object
) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = session.get(url, timeout=CLIENT_TIMEOUT, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


# --- Strategies ---------------------------------------------------------------------------------

PCHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"


def percent_encode(data: bytes) -> bytes:
    return "".join(f"%{byte:02X}" for byte in data).encode()


def raw_bytes(text: str) -> bytes:
    """A sloppy client's target: UTF-8, unescaped, minus the bytes that end the request line."""
    return bytes(b for b in text.encode("utf-8") if b not in b" \r\n")


segments = st.one_of(
    st.text(PCHARS, max_size=20).map(str.encode),
    st.text(max_size=12).map(lambda text: quote(text, safe="").encode()),
    st.text(max_size=12).map(raw_bytes),
    st.binary(max_size=8).map(percent_encode),
    st.sampled_from(
        [b"", b".", b"..", b"...", b"%2e%2e", b"%2E", b"%2F", b"%00", b"%", b"%zz", b"%%", b"~"]
    ),
    # Very long segments, and very long numbers.
    st.builds(
        lambda unit, count: (unit * count)[:9000],
        st.text(PCHARS, min_size=1, max_size=8).map(str.encode),
        st.integers(100, 3000),
    ),
    st.builds(
        lambda prefix, digit, count: prefix + digit * count,
        st.sampled_from([b"", b"-", b"0x", b"0b", b"0o"]),
        st.sampled_from([b"1", b"7", b"f"]),
        st.integers(60, 5000),
    ),
)
prefixes = st.sampled_from(
    [
        b"",
        b"/details",
        b"/reviews",
        b"/ratings",
        b"/api/v1/products",
        b"/productpage",
        b"/static",
        b"/health",
        b"/login",
        b"/",
        b"//",
    ]
)
queries = st.one_of(
    st.just(b""),
    st.text(string.printable.strip() + "%", max_size=40).map(
        lambda q: b"?" + raw_bytes(q.replace("#", ""))
    ),
    st.text(max_size=20).map(lambda q: b"?q=" + quote(q, safe="").encode()),
)
paths = st.builds(
    lambda prefix, parts, slash, query: prefix + b"/" + b"/".join(parts) + slash + query,
    prefixes,
    st.lists(segments, max_size=6),
    st.sampled_from([b"", b"/", b"//"]),
    queries,
)
targets = st.one_of(
    paths,
    st.sampled_from(
        [b"*", b"productpage", b"http://bookinfo/productpage", b"https://x:1/details/0", b"?"]
    ),
)

# Integers as Ruby, JavaScript and Java read them (details, ratings, reviews), and not integers.
ODD_IDS = [
    # Ruby's Integer(): prefixes, leading-zero octal, underscores, surrounding whitespace.
    *["0", "-0", "+1", "010", "08", "0x1A", "0X1a", "0b101", "0o17", "0d19", "0_7", "1_000"],
    *["1__0", "_1", "1_", " 7 ", "\t7", "0\n"],
    # JavaScript's parseInt() stops at the first non-digit; Java's int has 32 bits.
    *["7abc", "0x", "2147483647", "2147483648", "-2147483648", "-2147483649", "1e3", "1.5"],
    # Not numbers at all, or not ASCII digits.
    *["NaN", "Infinity", "null", "true", "[]", "..", ".", "", "%", "%2F", "a/b", "1?x=2"],
    *["1#frag", "\u0661", "\uff11"],
]
PRODUCT_IDS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(ODD_IDS),
    st.from_regex(r"\s{0,2}[+-]?(0[xXbBoOdD_]?)?[0-9a-fA-F_]{0,30}\s{0,2}", fullmatch=True),
    st.text(max_size=40),
    # Numbers far beyond any integer type, in decimal and (short enough for any server) in hex.
    st.integers(20, 5000).map(lambda count: "9" * count),
    st.integers(16, 3600).map(lambda count: "0x" + "f" * count),
)
ID_ROUTES = {
    "details": ("details", "/details/{}"),
    "reviews": ("reviews", "/reviews/{}"),
    "ratings": ("ratings", "/ratings/{}"),
    "api-details": ("productpage", "/api/v1/products/{}"),
    "api-reviews": ("productpage", "/api/v1/products/{}/reviews"),
    "api-ratings": ("productpage", "/api/v1/products/{}/ratings"),
}

TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
# Headers that change how a message is framed or routed, not what it asks: left out.
FRAMING = {"connection", "content-length", "expect", "host", "keep-alive", "proxy-connection"}
FRAMING |= {"te", "trailer", "transfer-encoding", "upgrade"}
header_names = st.one_of(
    st.sampled_from(
        [
            *FORWARDED_HEADERS,
            *["b3", "Referer", "Accept", "Accept-Language", "Accept-Encoding", "Content-Type"],
            *["Cookie", "Origin", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"],
            *["Forwarded", "Range", "If-None-Match", "If-Modified-Since", "X-HTTP-Method-Override"],
        ]
    ).flatmap(lambda name: st.sampled_from([name, name.lower(), name.upper(), name.title()])),
    st.text(TOKEN, min_size=1, max_size=30),
).filter(lambda name: name.lower() not in FRAMING)
# Printable latin-1: what an HTTP/1.1 field value may hold (obs-text included), minus CR and LF.
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=["Cc"]),
    max_size=200,
)


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    headers = []
    for _ in range(draw(st.integers(0, 8))):
        headers.append((draw(header_names), draw(header_values)))
    return headers


# Values a browser could hold for a cookie (RFC 6265 cookie-octets), and a few shapes of token.
cookie_values = st.one_of(
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';,"\\'),
        max_size=300,
    ),
    st.from_regex(r"\.?[A-Za-z0-9_-]{0,60}(\.[A-Za-z0-9_-]{0,40}){0,4}", fullmatch=True),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
ratings_bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(["Reviewer1", "Reviewer2", "Reviewer3"]) | st.text(max_size=10),
        st.integers(-10, 10) | json_values,
        max_size=4,
    ).map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    # Valid JSON at the edges: numbers no float can hold, lone surrogate escapes, deep nesting
    # (shallow enough for this process to compare, or far too deep for any).
    st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,3})?[eE][+-]?[0-9]{1,4}", fullmatch=True).map(
        str.encode
    ),
    st.builds(
        lambda code, key: f'{{"{key}": "\\u{code:04x}"}}'.encode(),
        st.integers(0xD800, 0xDFFF),
        st.sampled_from(["Reviewer1", "x"]),
    ),
    st.integers(1, 300).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(3000, 20000).map(lambda depth: b"[" * depth + b"]" * depth),
)


# --- Any request target, any method -------------------------------------------------------------


@EXAMPLES
@given(
    service=st.sampled_from(SERVICES),
    method=st.sampled_from(METHODS),
    target=targets,
    body=st.none() | st.binary(max_size=100),
)
def test_any_request_target(
    bookinfo_v3: Bookinfo, service: str, method: str, target: bytes, body: bytes | None
) -> None:
    answer = send(port_of(bookinfo_v3, service), method, target, body=body)
    assert_sound(answer, target, body)


# --- Product ids, on every route that takes one -------------------------------------------------


@EXAMPLES
@given(route=st.sampled_from(sorted(ID_ROUTES)), product_id=PRODUCT_IDS)
def test_any_product_id(bookinfo_v3: Bookinfo, route: str, product_id: str) -> None:
    service, template = ID_ROUTES[route]
    target = template.format(quote(product_id, safe="")).encode()
    answer = send(port_of(bookinfo_v3, service), "GET", target)
    assert_sound(answer, product_id)

    if route.startswith("api-") and product_id and "/" not in product_id:
        # productpage answers what the service behind it answered for the same id.
        downstream = route.removeprefix("api-")
        direct = send(
            port_of(bookinfo_v3, downstream),
            "GET",
            f"/{downstream}/{quote(product_id, safe='')}".encode(),
        )
        assert answer.status == direct.status, (answer, direct)
        if direct.status == 200:
            assert strict_json(answer.text) == strict_json(direct.text)


@EXAMPLES
@given(number=st.integers(-(2**40), 2**40))
def test_decimal_ids_answer_on_every_service(bookinfo_v3: Bookinfo, number: int) -> None:
    """A plain decimal id is a product id to all three services (reviews: within 32 bits)."""
    details = send(port_of(bookinfo_v3, "details"), "GET", f"/details/{number}".encode())
    assert details.status == 200, details
    assert strict_json(details.text)["id"] == number  # type: ignore[index]

    ratings_answer = send(port_of(bookinfo_v3, "ratings"), "GET", f"/ratings/{number}".encode())
    assert ratings_answer.status == 200, ratings_answer
    assert strict_json(ratings_answer.text)["id"] == number  # type: ignore[index]

    reviews_answer = send(port_of(bookinfo_v3, "reviews"), "GET", f"/reviews/{number}".encode())
    if -(2**31) <= number < 2**31:
        assert reviews_answer.status == 200, reviews_answer
        assert strict_json(reviews_answer.text)["id"] == str(number)  # type: ignore[index]
    else:
        assert reviews_answer.status == 404, reviews_answer


# --- Every method on every route ----------------------------------------------------------------

# (service, path, methods the route answers). Flask adds HEAD to GET routes and OPTIONS to all;
# ratings matches every path for GET and POST, like the Node original.
ROUTES = [
    ("productpage", "/", {"GET"}),
    ("productpage", "/index.html", {"GET"}),
    ("productpage", "/health", {"GET"}),
    ("productpage", "/productpage", {"GET"}),
    ("productpage", "/login", {"POST"}),
    ("productpage", "/logout", {"GET"}),
    ("productpage", "/metrics", {"GET"}),
    ("productpage", "/api/v1/products", {"GET"}),
    ("productpage", "/api/v1/products/0", {"GET"}),
    ("productpage", "/api/v1/products/0/reviews", {"GET"}),
    ("productpage", "/api/v1/products/0/ratings", {"GET"}),
    ("details", "/details/0", {"GET", "POST"}),
    ("details", "/health", {"GET"}),
    ("reviews", "/reviews/0", {"GET"}),
    ("reviews", "/health", {"GET"}),
    ("ratings", "/ratings/0", {"GET", "POST"}),
    ("ratings", "/health", {"GET", "POST"}),
]


@pytest.mark.parametrize(
    ("service", "path", "allowed"), ROUTES, ids=[f"{service}:{path}" for service, path, _ in ROUTES]
)
def test_every_method_on_every_route(
    bookinfo_v3: Bookinfo, service: str, path: str, allowed: set[str]
) -> None:
    answered = allowed | {"OPTIONS"} | ({"HEAD"} if "GET" in allowed else set())
    for method in METHODS:
        # An empty body: POST /ratings/0 then answers 400 and changes nothing.
        body = b"" if method in {"POST", "PUT", "PATCH"} else None
        answer = send(port_of(bookinfo_v3, service), method, path.encode(), body=body)
        assert_sound(answer)
        if method in answered:
            assert answer.status != 405, answer
        else:
            assert answer.status == 405, answer
        if method == "HEAD":
            assert answer.body == b"", answer


# --- Arbitrary headers --------------------------------------------------------------------------

HEADER_ROUTES = [
    ("productpage", "GET", "/productpage"),
    ("productpage", "GET", "/api/v1/products/0"),
    ("productpage", "GET", "/api/v1/products/0/reviews"),
    ("productpage", "GET", "/api/v1/products/0/ratings"),
    ("productpage", "POST", "/login"),
    ("productpage", "GET", "/logout"),
    ("productpage", "GET", "/"),
    ("details", "GET", "/details/0"),
    ("reviews", "GET", "/reviews/0"),
    ("ratings", "GET", "/ratings/0"),
]


@EXAMPLES
@given(route=st.sampled_from(HEADER_ROUTES), headers=header_lists())
def test_arbitrary_headers(
    bookinfo_v3: Bookinfo, route: tuple[str, str, str], headers: list[tuple[str, str]]
) -> None:
    service, method, path = route
    body = None
    if method == "POST":  # a login form; a Content-Type among `headers` may contradict it
        body = b"username=jason&passwd=x"
        headers = [("Content-Type", "application/x-www-form-urlencoded"), *headers]
    answer = send(port_of(bookinfo_v3, service), method, path.encode(), headers, body)
    assert_sound(answer, headers)
    if path == "/productpage":
        assert answer.status == 200, answer
        assert "Book Details" in answer.text
        assert "Book Reviews" in answer.text
    if service == "productpage" and path.startswith("/api/"):
        assert answer.status == 200, answer  # every service is up


# --- The page, whatever the query string and cookies --------------------------------------------


@EXAMPLES
@given(query=queries, cookie=cookie_values, headers=header_lists())
def test_page_always_renders(
    bookinfo_v3: Bookinfo, query: bytes, cookie: str, headers: list[tuple[str, str]]
) -> None:
    answer = send(
        port_of(bookinfo_v3, "productpage"),
        "GET",
        b"/productpage" + query,
        [*headers, ("Cookie", f"session={cookie}")],
    )
    assert_sound(answer, query, cookie, headers)
    assert answer.status == 200, answer
    assert "Book Details" in answer.text
    assert "Book Reviews" in answer.text
    assert "Sign in" in answer.text  # a cookie nobody signed logs nobody in


# --- Login forms --------------------------------------------------------------------------------

referers = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "/productpage?u=normal",
            "http://evil.example/steal",
            "//evil.example/x",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "/%2F/evil.example",
            "/./evil.example",
            "/\t/evil.example",
            "http://[",
            "//[::1",
            "http://[::1/x",
            "",
        ]
    ),
    header_values,
)


def assert_stays_on_site(location: str) -> None:
    # Browsers drop tabs and newlines inside a URL, and surrounding spaces and controls.
    seen = re.sub(r"[\t\n\r]", "", location).strip("".join(map(chr, range(0x21))))
    assert seen.startswith("/"), location
    assert not seen.startswith("//"), location
    assert "\\" not in seen, location
    assert urlsplit(seen).netloc == "", location


@EXAMPLES
@given(
    username=st.text(max_size=60),
    passwd=st.text(max_size=60),
    extra=st.lists(st.tuples(st.text(max_size=15), st.text(max_size=40)), max_size=4),
    referer=referers,
)
def test_any_login_form(
    bookinfo_v3: Bookinfo,
    username: str,
    passwd: str,
    extra: list[tuple[str, str]],
    referer: str | None,
) -> None:
    # Sent as the server would read it anyway: without surrounding spaces and tabs.
    headers = {} if referer is None else {"Referer": referer.strip(" \t").encode("latin-1")}
    form = [("username", username), ("passwd", passwd), *extra]
    with requests.Session() as session:
        started = time.monotonic()
        login = session.post(
            bookinfo_v3.url("productpage", "/login"),
            data=form,
            headers=headers,
            allow_redirects=False,
            timeout=CLIENT_TIMEOUT,
        )
        assert time.monotonic() - started < HEALTHY_SECONDS
        assert login.status_code == 302, login.text[:500]
        assert_no_traceback(login.text, form, referer)
        assert_stays_on_site(login.headers["Location"])

        page, seconds = timed_get(session, bookinfo_v3.url("productpage", "/productpage"))
        assert page.status_code == 200, page.text[:500]
        assert_no_traceback(page.text, form, referer)
        assert seconds < HEALTHY_SECONDS
        assert_page(page, seconds, form)
        if username:
            assert f'<span class="user">{escape(username)}</span>' in page.text
        else:
            assert "Sign in" in page.text

        logout = session.get(
            bookinfo_v3.url("productpage", "/logout"),
            allow_redirects=False,
            timeout=CLIENT_TIMEOUT,
        )
        assert logout.status_code == 302
        page, seconds = timed_get(session, bookinfo_v3.url("productpage", "/productpage"))
        assert_page(page, seconds, form)
        assert "Sign in" in page.text


# --- Tampered session cookies -------------------------------------------------------------------


def login_cookie(stack: Bookinfo, user: str) -> str:
    with requests.Session() as session:
        session.post(
            stack.url("productpage", "/login"),
            data={"username": user},
            allow_redirects=False,
            timeout=CLIENT_TIMEOUT,
        )
        return session.cookies["session"]


def signed_with(key: str, data: object) -> str:
    """A session cookie as productpage would sign it, with `key` for the secret."""
    app = Flask(__name__)
    app.secret_key = key
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return serializer.dumps(data)


COOKIE_ALPHABET = string.ascii_letters + string.digits + "-_."


@FEWER_EXAMPLES
@given(
    position=st.integers(0, 500),
    char=st.sampled_from(COOKIE_ALPHABET),
    edit=st.sampled_from(["replace", "insert", "delete", "truncate"]),
)
def test_tampered_session_cookie(
    bookinfo_v3: Bookinfo, position: int, char: str, edit: str
) -> None:
    original = login_cookie(bookinfo_v3, "jason")
    at = position % (len(original) + 1)
    tampered = {
        "replace": original[:at] + char + original[at + 1 :],
        "insert": original[:at] + char + original[at:],
        "delete": original[:at] + original[at + 1 :],
        "truncate": original[:at],
    }[edit]
    with requests.Session() as session:
        session.cookies.set("session", tampered)
        page, seconds = timed_get(session, bookinfo_v3.url("productpage", "/productpage"))
        assert_page(page, seconds)
        # Nobody else: either the edit broke the signature, or it changed nothing that counts.
        assert ('<span class="user">jason</span>' in page.text) or ("Sign in" in page.text)
        for path in ("/api/v1/products/0", "/api/v1/products/0/reviews"):
            answer, seconds = timed_get(session, bookinfo_v3.url("productpage", path))
            assert answer.status_code == 200
            assert seconds < HEALTHY_SECONDS


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param(signed_with("some-other-key", {"user": "mallory"}), id="other-key"),
        pytest.param("", id="empty"),
        pytest.param(".", id="dot"),
        pytest.param("." + "A" * 4000, id="compressed-garbage"),
        pytest.param("eyJ1c2VyIjoiamFzb24ifQ.ZZZZZZ.AAAAAAAAAAAAAAAAAAAAAA", id="bad-signature"),
    ],
)
def test_session_cookie_signed_by_someone_else(bookinfo_v3: Bookinfo, cookie: str) -> None:
    with requests.Session() as session:
        session.cookies.set("session", cookie)
        page, seconds = timed_get(session, bookinfo_v3.url("productpage", "/productpage"))
        assert_page(page, seconds)
        assert "Sign in" in page.text
        assert "mallory" not in page.text


# --- Ratings bodies -----------------------------------------------------------------------------


def as_javascript_stores_it(body: bytes) -> object:
    """The JSON value of `body` after JSON.parse and JSON.stringify: 1e400 overflows to null."""

    def number(text: str) -> float | None:
        value = float(text)
        return value if math.isfinite(value) else None

    return json.loads(body.decode("utf-8", "replace"), parse_float=number)


@EXAMPLES
@given(product_id=st.sampled_from(["0", "1", "-3", "7abc", "0x10"]), body=ratings_bodies)
def test_any_ratings_body(bookinfo_v3: Bookinfo, product_id: str, body: bytes) -> None:
    """Whatever is posted, ratings answers sanely, and reviews and the page still render.

    Posting to product 0 changes the stars the page shows, so each example puts them back.
    """
    ratings_port = port_of(bookinfo_v3, "ratings")
    target = f"/ratings/{product_id}".encode()
    try:
        posted = send(ratings_port, "POST", target, [("Content-Type", "application/json")], body)
        assert_sound(posted, body)
        assert posted.status in (200, 400), posted
        if posted.status == 200:
            stored = strict_json(posted.text)["ratings"]  # type: ignore[index]
            assert stored == as_javascript_stores_it(body)
            again = send(ratings_port, "GET", target)
            assert_sound(again, body)
            assert strict_json(again.text)["ratings"] == stored  # type: ignore[index]

        for service, path in (
            ("reviews", "/reviews/0"),
            ("productpage", "/api/v1/products/0/reviews"),
            ("productpage", "/api/v1/products/0/ratings"),
        ):
            answer = send(port_of(bookinfo_v3, service), "GET", path.encode())
            assert_sound(answer, body)
            assert answer.status == 200, answer
        with requests.Session() as session:
            page, seconds = timed_get(session, bookinfo_v3.url("productpage", "/productpage"))
            assert_page(page, seconds, body)
    finally:
        send(ratings_port, "POST", b"/ratings/0", body=json.dumps(DEFAULT_RATINGS).encode())


# --- Regressions --------------------------------------------------------------------------------
# Inputs that once made a service answer 500 (or answer what is not JSON), found by the properties
# above. Each is pinned here on its own, so that it is tried on every run, not only when Hypothesis
# happens to draw it.


@pytest.fixture
def own_ratings(serve: Callable[[Flask], LiveApp]) -> LiveApp:
    """A ratings of this test's own: what these tests store must not show up anywhere else."""
    return serve(ratings.create_app(Settings()))


@pytest.mark.parametrize(
    ("service", "target"),
    [
        # More than 4300 decimal digits: Python refuses to convert such a number (or to print it).
        ("details", "/details/" + "1" * 4301),
        ("ratings", "/ratings/" + "1" * 4301),
        ("reviews", "/reviews/" + "1" * 4301),
        # Short enough for gunicorn's 4094-byte request line, so these reach the app in the images.
        ("details", "/details/0x" + "f" * 3600),
        ("ratings", "/ratings/0x" + "f" * 3600),
        ("productpage", "/api/v1/products/0x" + "f" * 3600),
    ],
    ids=["details-dec", "ratings-dec", "reviews-dec", "details-hex", "ratings-hex", "api-hex"],
)
def test_huge_numeric_id(bookinfo_v3: Bookinfo, service: str, target: str) -> None:
    answer = send(port_of(bookinfo_v3, service), "GET", target.encode())
    assert_sound(answer)
    assert 400 <= answer.status < 500, answer


@pytest.mark.parametrize("username", ["Łukasz", "\u2603", " jason", "ja\nson", "jason\r\n"])
def test_user_name_that_is_not_a_header_value(bookinfo_v3: Bookinfo, username: str) -> None:
    """productpage sends the name on as the end-user header, which holds only latin-1 text."""
    with requests.Session() as session:
        session.post(
            bookinfo_v3.url("productpage", "/login"),
            data={"username": username},
            allow_redirects=False,
            timeout=CLIENT_TIMEOUT,
        )
        page, seconds = timed_get(session, bookinfo_v3.url("productpage", "/productpage"))
        assert_page(page, seconds)
        assert f'<span class="user">{escape(username)}</span>' in page.text
        for path in ("/api/v1/products/0", "/api/v1/products/0/reviews"):
            api, _ = timed_get(session, bookinfo_v3.url("productpage", path))
            assert api.status_code == 200, api.text


@pytest.mark.parametrize(("method", "path"), [("POST", "/login"), ("GET", "/logout")])
@pytest.mark.parametrize("referer", ["http://[", "//[", "http://[::1/x"])
def test_referer_that_is_not_a_url(
    bookinfo_v3: Bookinfo, method: str, path: str, referer: str
) -> None:
    answer = send(
        port_of(bookinfo_v3, "productpage"),
        method,
        path.encode(),
        [("Referer", referer), ("Content-Type", "application/x-www-form-urlencoded")],
        b"username=jason" if method == "POST" else None,
    )
    assert_sound(answer)
    assert answer.status == 302, answer
    assert answer.headers["Location"] == "/productpage"


def test_deeply_nested_ratings_json(own_ratings: LiveApp) -> None:
    body = b"[" * 5000 + b"]" * 5000
    answer = send(own_ratings.port, "POST", b"/ratings/5", body=body)
    assert_sound(answer)
    assert answer.status == 400, answer


def test_out_of_range_number_in_ratings_json(own_ratings: LiveApp) -> None:
    """1e400 is valid JSON, but no float: it must not come back as Infinity, which is not JSON."""
    posted = send(own_ratings.port, "POST", b"/ratings/5", body=b'{"Reviewer1": 1e400}')
    assert_sound(posted)
    answer = send(own_ratings.port, "GET", b"/ratings/5")
    assert_sound(answer)
    assert answer.status == 200, answer


def test_lone_surrogate_in_ratings_json(own_ratings: LiveApp) -> None:
    """A lone surrogate escape is valid JSON with no UTF-8 form; it once broke that id for good."""
    posted = send(own_ratings.port, "POST", b"/ratings/5", body=b'{"Reviewer1": "\\ud800"}')
    assert_sound(posted)
    answer = send(own_ratings.port, "GET", b"/ratings/5")
    assert_sound(answer)
    assert answer.status == 200, answer
    assert strict_json(answer.text) == {"id": 5, "ratings": {"Reviewer1": "\ud800"}}


@pytest.mark.parametrize(
    "data",
    [{"user": ["jason"]}, {"user": {"name": "jason"}}, {"user": 1.5}, {"user": 7}, [1, 2], "x"],
    ids=["list", "object", "float", "int", "not-an-object", "string"],
)
def test_forged_session_without_a_user_name(bookinfo_v3: Bookinfo, data: object) -> None:
    """The default key is public, so a signed cookie may hold anything: it logs nobody in."""
    cookie = signed_with(Settings().secret_key, data)
    with requests.Session() as session:
        session.cookies.set("session", cookie)
        page, seconds = timed_get(session, bookinfo_v3.url("productpage", "/productpage"))
        assert_page(page, seconds)
        assert "Sign in" in page.text
        for path in ("/api/v1/products/0", "/api/v1/products/0/reviews"):
            api, _ = timed_get(session, bookinfo_v3.url("productpage", path))
            assert api.status_code == 200, api.text
