"""The bootstrap of each sandbox proxy: who it is, where its admin API listens, where its
configuration comes from.

istiod's proxies get a bootstrap from pilot-agent that points Envoy at istiod over gRPC (ADS).
A sandbox proxy's bootstrap points it at files instead (xds_files.py): listeners and clusters
come from `lds.json` and `cds.json` in the proxy's xDS directory, and each HTTP connection
manager reads its route configuration from its own file there (the `rds` block that
translate/listeners.py writes). Everything else is as Istio's: the node identity
(`sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`, `router~...` for a gateway),
and an admin API on loopback only.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..model import CLUSTER_DOMAIN, Gateway, Pod
from . import xds_files

# Envoy warns at startup when nothing limits downstream connections; Istio's bootstrap sets the
# same effectively unlimited value through the same resource monitor.
MAX_DOWNSTREAM_CONNECTIONS = 2147483647
# When a proxy sends its spans to the Zipkin collector: once 100 have piled up, or every second.
# Envoy's defaults (5 spans, 5 s) would make a learner wait 5 s for a trace on a quiet mesh, and
# send a POST for every 5 spans on a busy one. Runtime keys of Envoy's Zipkin tracer (1.40).
ZIPKIN_FLUSH = {"tracing.zipkin.min_flush_spans": 100, "tracing.zipkin.flush_interval_ms": 1000}

_HCM = "envoy.filters.network.http_connection_manager"


def sidecar_node_id(pod: Pod) -> str:
    """sidecar~127.0.0.1~reviews-v2-5f7c9d8b6-x2k4p.default~default.svc.cluster.local"""
    return f"sidecar~{pod.address}~{pod.name}.{pod.namespace}~{pod.namespace}.svc.{CLUSTER_DOMAIN}"


def gateway_node_id(gateway: Gateway) -> str:
    """router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local"""
    namespace = gateway.namespace
    return f"router~127.0.0.1~{gateway.name}.{namespace}~{namespace}.svc.{CLUSTER_DOMAIN}"


def sidecar_cluster_name(pod: Pod) -> str:
    """The node's `cluster` (Istio's service cluster): the app name and namespace."""
    app = pod.labels.get("app") or pod.deployment
    return f"{app}.{pod.namespace}"


def gateway_cluster_name(gateway: Gateway) -> str:
    return f"{gateway.name}.{gateway.namespace}"


def bootstrap(
    node_id: str,
    cluster_name: str,
    admin_port: int,
    xds_dir: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A bootstrap that reads every listener, cluster and route configuration from `xds_dir`.

    The files must exist before Envoy starts (xds_files.write_all, even with empty lists).
    """
    node: dict[str, Any] = {"id": node_id, "cluster": cluster_name}
    if metadata:
        node["metadata"] = dict(metadata)
    return {
        "node": node,
        "admin": {"address": _loopback(admin_port)},
        "dynamic_resources": {
            "lds_config": xds_files.config_source(xds_files.lds_path(xds_dir)),
            "cds_config": xds_files.config_source(xds_files.cds_path(xds_dir)),
        },
        "layered_runtime": {"layers": [{"name": "static", "static_layer": dict(ZIPKIN_FLUSH)}]},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
    }


def static_bootstrap(
    base: Mapping[str, Any],
    *,
    listeners: Iterable[Mapping[str, Any]],
    clusters: Iterable[Mapping[str, Any]],
    route_configs: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The same proxy with its whole configuration inline, for `envoy --mode validate`.

    Validate mode reads the bootstrap only, never the dynamic resource files, so this turns the
    files' content into static resources: the clusters as they are, the listeners with each
    `rds` block replaced by the route configuration it names. Envoy then checks all of it,
    including that every cluster a route names exists.
    """
    by_name = {route_config["name"]: route_config for route_config in route_configs}
    inlined = [_inline_routes(listener, by_name) for listener in listeners]
    static = copy.deepcopy(dict(base))
    static.pop("dynamic_resources", None)
    static["static_resources"] = {
        "listeners": [_without_type(listener) for listener in inlined],
        "clusters": [_without_type(copy.deepcopy(dict(cluster))) for cluster in clusters],
    }
    return static


def _inline_routes(
    listener: Mapping[str, Any], route_configs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    listener = copy.deepcopy(dict(listener))
    for chain in listener.get("filter_chains", []):
        for network_filter in chain.get("filters", []):
            hcm = network_filter.get("typed_config", {})
            if network_filter.get("name") != _HCM or "rds" not in hcm:
                continue
            name = hcm.pop("rds")["route_config_name"]
            if name not in route_configs:
                raise ValueError(f"listener {listener.get('name')!r} uses route config {name!r}")
            hcm["route_config"] = _without_type(copy.deepcopy(route_configs[name]))
    return listener


def _without_type(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != "@type"}


def _loopback(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}
