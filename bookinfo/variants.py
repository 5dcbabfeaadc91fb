"""The service versions Bookinfo ships, and the environment that makes each one.

Istio builds every version of a service from the same source and tells them apart with a few
environment variables baked into the image (reviews v3 is reviews with ENABLE_RATINGS=true and
STAR_COLOR=red). This table is that knowledge, used by `python -m bookinfo serve --version` and
checked against the Dockerfile's build targets by the test suite, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    service: str
    version: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The Dockerfile build target and image name suffix, e.g. ``reviews-v3``."""
        return f"{self.service}-{self.version}"


VARIANTS: tuple[Variant, ...] = (
    Variant("productpage", "v1"),
    # Istio's rate-limiting demos use this one: every page view also sends 100 extra reviews calls.
    Variant("productpage", "v-flooding", {"FLOOD_FACTOR": "100"}),
    Variant("details", "v1", {"SERVICE_VERSION": "v1", "ENABLE_EXTERNAL_BOOK_SERVICE": "false"}),
    Variant("details", "v2", {"SERVICE_VERSION": "v2", "ENABLE_EXTERNAL_BOOK_SERVICE": "true"}),
    Variant("reviews", "v1", {"SERVICE_VERSION": "v1", "ENABLE_RATINGS": "false"}),
    Variant(
        "reviews", "v2", {"SERVICE_VERSION": "v2", "ENABLE_RATINGS": "true", "STAR_COLOR": "black"}
    ),
    Variant(
        "reviews", "v3", {"SERVICE_VERSION": "v3", "ENABLE_RATINGS": "true", "STAR_COLOR": "red"}
    ),
    Variant("ratings", "v1", {"SERVICE_VERSION": "v1"}),
    Variant("ratings", "v-faulty", {"SERVICE_VERSION": "v-faulty"}),
    Variant("ratings", "v-delayed", {"SERVICE_VERSION": "v-delayed"}),
    Variant("ratings", "v-unavailable", {"SERVICE_VERSION": "v-unavailable"}),
    Variant("ratings", "v-unhealthy", {"SERVICE_VERSION": "v-unhealthy"}),
)

SERVICES = ("productpage", "details", "reviews", "ratings")


def find(service: str, version: str) -> Variant:
    for variant in VARIANTS:
        if variant.service == service and variant.version == version:
            return variant
    known = ", ".join(v.version for v in VARIANTS if v.service == service)
    raise LookupError(f"{service} has no version {version!r}; choose one of: {known}")
