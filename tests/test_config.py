"""Settings come from the environment with Istio's variable names, and bad values are named."""

from __future__ import annotations

import pytest

from bookinfo import variants
from bookinfo.config import DEFAULT_SECRET_KEY, ConfigError, Settings


def test_defaults_are_istios():
    settings = Settings.from_environ({})
    assert settings.service_url("details") == "http://details:9080"
    assert settings.service_url("reviews") == "http://reviews:9080"
    assert settings.service_url("ratings") == "http://ratings:9080"
    assert settings.productpage_timeout_seconds == 3.0
    assert settings.reviews_attempts == 2
    assert settings.secret_key == DEFAULT_SECRET_KEY
    assert settings.hostname is None and settings.cluster_name is None


def test_services_domain_and_ports():
    settings = Settings.from_environ(
        {
            "SERVICES_DOMAIN": "default.svc.cluster.local",
            "DETAILS_HOSTNAME": "details-v2",
            "DETAILS_SERVICE_PORT": "9081",
        }
    )
    assert settings.service_url("details") == "http://details-v2.default.svc.cluster.local:9081"
    assert settings.service_url("ratings") == "http://ratings.default.svc.cluster.local:9080"


@pytest.mark.parametrize(("color", "timeout"), [("black", 10.0), ("red", 2.5), ("Black", 2.5)])
def test_ratings_timeout_follows_the_star_color(color, timeout):
    assert Settings.from_environ({"STAR_COLOR": color}).ratings_timeout_seconds == timeout


@pytest.mark.parametrize(
    ("value", "enabled"), [("true", True), ("TRUE", True), ("1", False), ("", False)]
)
def test_enable_ratings_is_javas_boolean(value, enabled):
    assert Settings.from_environ({"ENABLE_RATINGS": value}).enable_ratings is enabled


@pytest.mark.parametrize(("value", "enabled"), [("true", True), ("True", False), ("yes", False)])
def test_external_book_switch_is_rubys_exact_true(value, enabled):
    settings = Settings.from_environ(
        {"ENABLE_EXTERNAL_BOOK_SERVICE": value, "DO_NOT_ENCRYPT": value}
    )
    assert settings.enable_external_book_service is enabled
    assert settings.do_not_encrypt is enabled


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"FLOOD_FACTOR": "abc"}, "FLOOD_FACTOR"),
        ({"FLOOD_FACTOR": "-1"}, "FLOOD_FACTOR"),
        ({"DETAILS_SERVICE_PORT": "http"}, "DETAILS_SERVICE_PORT"),
        ({"RATINGS_SERVICE_PORT": "70000"}, "RATINGS_SERVICE_PORT"),
        ({"PROPAGATE_TRACE_HEADERS": "no"}, "PROPAGATE_TRACE_HEADERS"),
    ],
)
def test_bad_values_name_the_variable(environ, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_environ(environ)


@pytest.mark.parametrize(
    ("value", "propagates"), [(None, True), ("", True), ("true", True), ("FALSE", False)]
)
def test_trace_headers_are_propagated_unless_switched_off(value, propagates):
    environ = {} if value is None else {"PROPAGATE_TRACE_HEADERS": value}
    assert Settings.from_environ(environ).propagate_trace_headers is propagates


def test_an_empty_secret_key_falls_back_to_the_shared_default():
    assert Settings.from_environ({"SECRET_KEY": ""}).secret_key == DEFAULT_SECRET_KEY


def test_every_variant_builds_valid_settings():
    for variant in variants.VARIANTS:
        settings = Settings.from_environ(variant.env)
        if variant.service == "reviews":
            assert settings.enable_ratings is (variant.version != "v1")
    assert variants.find("reviews", "v3").env["STAR_COLOR"] == "red"
    with pytest.raises(LookupError, match="v1, v2, v3"):
        variants.find("reviews", "v9")
