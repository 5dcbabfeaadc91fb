"""What a learner sees: a real headless Chromium loads the productpage and clicks through it.

The HTML tests in test_productpage.py check the markup; these check what the browser makes of it:
the stars are drawn and red, the sign-in dialog opens, closes and logs in, and the page loads with
no errors and nothing fetched from outside this machine.

Chromium comes from the system (Debian: `apt-get install chromium`, or set CHROMIUM to a binary),
never from Playwright's own download. Without one, or without the playwright package, this module
skips and says why.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from conftest import Bookinfo
from live import HOST

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response

# With `--dist loadfile` (scripts/test.sh) one worker runs them all: one Chromium, not N.
pytestmark = pytest.mark.browser


def chromium_binary() -> str | None:
    """The Chromium to drive: $CHROMIUM if set, else chromium or chromium-browser on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


CHROMIUM = chromium_binary()
if CHROMIUM is None:
    pytest.skip(
        "no Chromium found: install it with `sudo apt-get install chromium` "
        "(Debian/Ubuntu), or set CHROMIUM to a Chromium binary",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed: pip install playwright (never `playwright install`)",
)
expect = sync_api.expect

# Headless, and quiet: no sync, no component updates, no background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 5_000  # everything is on loopback: waiting longer only hides a hang
RED = "rgb(255, 0, 0)"
LOCAL = re.compile(rf"^http://{re.escape(HOST)}:\d+/")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Watched:
    """A browser tab, and everything that went wrong or left loopback while it was open."""

    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    failed: list[str] = field(default_factory=list)  # requests with no answer, or an HTTP error

    def open(self, stack: Bookinfo, path: str = "/productpage") -> Page:
        response = self.page.goto(stack.url("productpage", path))
        assert response is not None and response.status == 200
        return self.page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    """A fresh context (no cookies from other tests) with one page, watched for trouble."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    # Anything not on loopback is refused, so it shows up as a failed request instead of waiting
    # on a network the tests must not need.
    context.route(lambda url: not LOCAL.match(url), lambda route: route.abort("blockedbyclient"))
    watched = Watched(context.new_page())

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text} ({message.location})")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            watched.failed.append(f"{response.status} {response.request.method} {response.url}")

    def on_failed(request: Request) -> None:
        watched.failed.append(f"{request.failure} {request.method} {request.url}")

    watched.page.on("console", on_console)
    watched.page.on("pageerror", lambda error: watched.errors.append(f"page: {error}"))
    watched.page.on("request", lambda request: watched.requests.append(request.url))
    watched.page.on("response", on_response)
    watched.page.on("requestfailed", on_failed)
    yield watched
    context.close()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data.startswith(PNG_SIGNATURE), "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_reviews_v3_shows_nine_red_stars(bookinfo_v3: Bookinfo, tab: Watched, tmp_path: Path):
    page = tab.open(bookinfo_v3)
    expect(page).to_have_title("Simple Bookstore App")

    stars = page.locator(".glyphicon-star")
    expect(stars).to_have_count(9)  # Reviewer1's 5 and Reviewer2's 4
    expect(stars.filter(visible=True)).to_have_count(9)
    for star in stars.all():
        box = star.bounding_box()
        assert box is not None and box["width"] > 5 and box["height"] > 5, "a star is not drawn"
    colors = stars.evaluate_all(
        "stars => stars.map(star => [getComputedStyle(star).color,"
        " getComputedStyle(star.querySelector('path')).fill])"
    )
    assert colors == [[RED, RED]] * 9  # the star and the shape it paints are both red

    publisher = page.locator("section.details tr").filter(has_text="Publisher").locator("td")
    expect(publisher).to_have_text("PublisherA")

    shot = tmp_path / "productpage-v3.png"
    page.screenshot(path=shot, full_page=True)
    data = shot.read_bytes()
    assert len(data) > 10_000, f"a {len(data)}-byte screenshot is too small to show the page"
    width, height = png_size(data)
    assert width == 1280 and height >= 800


def test_reviews_v1_shows_no_stars(bookinfo_v1: Bookinfo, tab: Watched):
    page = tab.open(bookinfo_v1)
    expect(page.get_by_role("heading", name="Book Reviews")).to_be_visible()
    expect(page.locator("article.review")).to_have_count(2)  # the reviews are there...
    expect(page.locator(".glyphicon-star")).to_have_count(0)  # ...without stars
    expect(page.locator(".star")).to_have_count(0)  # not even empty ones


def test_sign_in_and_out_like_a_learner(bookinfo_v2: Bookinfo, tab: Watched):
    page = tab.open(bookinfo_v2)
    dialog = page.locator("dialog#login-dialog")
    expect(dialog).to_be_hidden()

    page.get_by_role("button", name="Sign in").click()
    expect(dialog).to_be_visible()
    assert dialog.evaluate("dialog => dialog.matches(':modal')"), "the dialog should be modal"
    expect(dialog.get_by_label("User Name")).to_be_focused()  # autofocus: the learner just types
    dialog.get_by_label("User Name").fill("jason")
    dialog.get_by_label("Password").fill("any password")
    with page.expect_response(lambda r: urlsplit(r.url).path == "/login") as login:
        dialog.get_by_role("button", name="Sign in").click()
    assert login.value.request.method == "POST"
    assert login.value.status == 302
    page.wait_for_load_state()

    assert urlsplit(page.url).path == "/productpage"
    nav = page.get_by_role("navigation")
    expect(nav.locator(".user")).to_have_text("jason")
    expect(nav.get_by_role("link", name="Sign out")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in")).to_have_count(0)
    expect(page.locator(".glyphicon-star")).to_have_count(9)  # still the whole page

    with page.expect_response(lambda r: urlsplit(r.url).path == "/logout"):
        nav.get_by_role("link", name="Sign out").click()
    page.wait_for_load_state()
    assert urlsplit(page.url).path == "/productpage"
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(nav.locator(".user")).to_have_count(0)
    assert not tab.errors and not tab.failed, tab.errors + tab.failed


def test_cancel_closes_the_dialog_without_signing_in(bookinfo_v2: Bookinfo, tab: Watched):
    page = tab.open(bookinfo_v2)
    dialog = page.locator("dialog#login-dialog")
    sign_in = page.get_by_role("button", name="Sign in")

    sign_in.click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()  # empty and required: must still close
    expect(dialog).to_be_hidden()

    sign_in.click()
    dialog.get_by_label("User Name").fill("jason")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(sign_in).to_be_visible()

    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("link", name="Sign out")).to_have_count(0)
    assert not [url for url in tab.requests if urlsplit(url).path == "/login"]


@pytest.mark.parametrize("stack", ["bookinfo_v1", "bookinfo_v2", "bookinfo_v3"])
def test_page_loads_cleanly_and_only_from_loopback(
    request: pytest.FixtureRequest, stack: str, tab: Watched
):
    page = tab.open(request.getfixturevalue(stack))
    page.wait_for_load_state("networkidle")

    assert not tab.errors, tab.errors
    assert not tab.failed, tab.failed
    outside = [url for url in tab.requests if not LOCAL.match(url)]
    assert not outside, f"the page fetched from outside this machine: {outside}"
    paths = {urlsplit(url).path for url in tab.requests}
    assert {"/productpage", "/static/css/bookinfo.css"} <= paths
    # The stylesheet did load and apply: the nav bar is dark, not the browser's default.
    navbar = page.get_by_role("navigation").evaluate("nav => getComputedStyle(nav).backgroundColor")
    assert navbar == "rgb(29, 39, 51)"
