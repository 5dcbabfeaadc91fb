"""Fixtures shared by the test suite: small factories, each test builds what it needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from bookinfo import details, productpage, ratings, reviews
from bookinfo.config import Settings
from live import HOST, LiveApp, Upstream, settings_for


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], LiveApp]]:
    """Serve a Flask app on a real loopback port for the length of the test."""
    started: list[LiveApp] = []

    def start(app: Flask) -> LiveApp:
        live = LiveApp(app)
        started.append(live)
        return live

    yield start
    for live in started:
        live.close()


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    """Start scriptable stand-ins for the services an app calls."""
    started: list[Upstream] = []

    def start(**kwargs: object) -> Upstream:
        peer = Upstream(**kwargs)  # type: ignore[arg-type]
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()


class Bookinfo:
    """All four real services wired together on loopback, like serve-all, in the test process."""

    def __init__(
        self,
        reviews_version: str = "v1",
        *,
        ratings_port: int | None = None,
        details_port: int | None = None,
        reviews_port: int | None = None,
    ) -> None:
        """A `*_port` points the callers of that service at another port instead (a stand-in)."""
        self.apps: dict[str, LiveApp] = {}
        self.apps["ratings"] = LiveApp(ratings.create_app(Settings()))
        review_settings = {
            "v1": {"enable_ratings": False},
            "v2": {"enable_ratings": True, "star_color": "black"},
            "v3": {"enable_ratings": True, "star_color": "red"},
        }[reviews_version]
        self.apps["reviews"] = LiveApp(
            reviews.create_app(
                Settings(
                    hostname=f"reviews-{reviews_version}-test",
                    **review_settings,
                    **settings_for(ratings=ratings_port or self.apps["ratings"].port),
                )
            )
        )
        self.apps["details"] = LiveApp(details.create_app(Settings()))
        self.apps["productpage"] = LiveApp(
            productpage.create_app(
                Settings(
                    **settings_for(
                        details=details_port or self.apps["details"].port,
                        reviews=reviews_port or self.apps["reviews"].port,
                        ratings=self.apps["ratings"].port,
                    )
                )
            )
        )

    def url(self, service: str, path: str = "") -> str:
        return self.apps[service].url(path)

    def close(self) -> None:
        for live in self.apps.values():
            live.close()


@pytest.fixture(scope="module")
def bookinfo_v1() -> Iterator[Bookinfo]:
    stack = Bookinfo("v1")
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def bookinfo_v2() -> Iterator[Bookinfo]:
    stack = Bookinfo("v2")
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def bookinfo_v3() -> Iterator[Bookinfo]:
    stack = Bookinfo("v3")
    yield stack
    stack.close()


__all__ = ["HOST", "Bookinfo"]
