"""Everything a Bookinfo service reads from its environment, in one place.

The variable names and defaults are the ones Istio's Bookinfo images use, so our images are drop-in
replacements: a Deployment written for Istio's sample sets the same variables and gets the same
behaviour. Each service reads only the fields it needs from the one `Settings` object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable holds a value the services cannot use."""


# A session cookie signed with this key is readable by every worker and every replica of
# productpage, which is what lets a learner stay logged in while Kubernetes spreads requests over
# three pods. It is not a secret: set SECRET_KEY in a real deployment.
DEFAULT_SECRET_KEY = "bookinfo-session-key-not-a-secret"  # noqa: S105 (see above)

RATINGS_VERSIONS = ("v1", "v-faulty", "v-delayed", "v-unavailable", "v-unhealthy")


@dataclass(frozen=True)
class Settings:
    # Where productpage and reviews find the services they call: http://<host><domain>:<port>.
    services_domain: str = ""
    details_hostname: str = "details"
    details_port: int = 9080
    reviews_hostname: str = "reviews"
    reviews_port: int = 9080
    ratings_hostname: str = "ratings"
    ratings_port: int = 9080

    # Which pod answered: reviews reports it as "podname"; the page shows it.
    hostname: str | None = None  # unset prints "null" in reviews' JSON, as in Java
    # reviews reports "clustername"; unset prints the literal "null" like the Java original.
    cluster_name: str | None = None
    service_version: str = "v1"
    # Copy the trace context onto outgoing calls (bookinfo/propagation.py). Not in Istio's
    # Bookinfo, which always does: PROPAGATE_TRACE_HEADERS=false shows a lab what happens when
    # a service does not.
    propagate_trace_headers: bool = True

    # productpage
    secret_key: str = DEFAULT_SECRET_KEY
    flood_factor: int = 0

    # details v2: fetch the book from Google Books instead of answering from memory.
    enable_external_book_service: bool = False
    do_not_encrypt: bool = False
    external_book_host: str = "www.googleapis.com"
    external_book_port: int | None = None  # None: 80 with DO_NOT_ENCRYPT, else 443

    # reviews v2 and v3
    enable_ratings: bool = False
    star_color: str = "black"

    # Demo modes of ratings (SERVICE_VERSION v-faulty, v-delayed, ...). Not read from the
    # environment: the values are the original's; tests shorten them.
    demo_delay_seconds: float = 7.0
    unavailable_period_seconds: float = 60.0
    unhealthy_period_seconds: float = 15 * 60.0

    # Timeouts are part of the contract Istio's tasks teach with; they are not configurable there
    # either. Tests read them from here rather than repeating the numbers.
    productpage_timeout_seconds: float = 3.0
    reviews_attempts: int = 2
    external_book_timeout_seconds: float = 5.0

    @property
    def ratings_timeout_seconds(self) -> float:
        """reviews' timeout towards ratings: 10 s for black stars (v2), 2.5 s otherwise (v3).

        This mismatch with productpage's 3 s x 2 is the bug Istio's fault-injection task finds.
        """
        return 10.0 if self.star_color == "black" else 2.5

    def service_url(self, name: str) -> str:
        host = getattr(self, f"{name}_hostname")
        port = getattr(self, f"{name}_port")
        return f"http://{host}{self.domain_suffix}:{port}"

    @property
    def domain_suffix(self) -> str:
        return f".{self.services_domain}" if self.services_domain else ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            services_domain=env.get("SERVICES_DOMAIN", ""),
            details_hostname=env.get("DETAILS_HOSTNAME", "details"),
            details_port=_port(env, "DETAILS_SERVICE_PORT"),
            reviews_hostname=env.get("REVIEWS_HOSTNAME", "reviews"),
            reviews_port=_port(env, "REVIEWS_SERVICE_PORT"),
            ratings_hostname=env.get("RATINGS_HOSTNAME", "ratings"),
            ratings_port=_port(env, "RATINGS_SERVICE_PORT"),
            hostname=env.get("HOSTNAME"),
            cluster_name=env.get("CLUSTER_NAME"),
            service_version=env.get("SERVICE_VERSION", "v1"),
            propagate_trace_headers=_boolean(env, "PROPAGATE_TRACE_HEADERS", default=True),
            secret_key=env.get("SECRET_KEY") or DEFAULT_SECRET_KEY,
            flood_factor=_int(env, "FLOOD_FACTOR", 0, minimum=0),
            # Ruby's `ENV[...] == 'true'`: only the exact lower-case word switches these on.
            enable_external_book_service=env.get("ENABLE_EXTERNAL_BOOK_SERVICE") == "true",
            do_not_encrypt=env.get("DO_NOT_ENCRYPT") == "true",
            external_book_host=env.get("EXTERNAL_BOOK_HOST", "www.googleapis.com"),
            external_book_port=(
                _port(env, "EXTERNAL_BOOK_PORT") if env.get("EXTERNAL_BOOK_PORT") else None
            ),
            # Java's Boolean.valueOf: "true" in any letter case.
            enable_ratings=env.get("ENABLE_RATINGS", "").lower() == "true",
            star_color=env.get("STAR_COLOR", "black"),
        )


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; unset it or set e.g. {name}={default}"
        ) from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _port(env: Mapping[str, str], name: str) -> int:
    port = _int(env, name, 9080, minimum=1)
    if port > 65535:
        raise ConfigError(f"{name}={port} is not a TCP port (1-65535)")
    return port


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"{name}={raw!r} must be true or false; unset it for {str(default).lower()}")
