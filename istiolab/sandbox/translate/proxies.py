"""The whole configuration of each proxy the sandbox runs, assembled from the other modules.

- a sidecar: its HTTP-proxy and inbound listeners, the `http_proxy` routes, every cluster;
- the ingress gateway: a listener per Gateway port, the `http.<port>` routes, every cluster;
- the kube-proxy stand-in: what pods without a sidecar call through (Services, nothing else),
  plus the port-forward to productpage on 127.0.0.1:9080 that a learner uses before the gateway
  lab, like `kubectl port-forward svc/productpage 9080:9080`.

Every mesh proxy (a sidecar, the gateway) also gets the cluster its spans go to (tracing.py),
and names itself in a request header on everything it sends, so that the proxy at the other end
can count the request under the right source workload (telemetry/access_log.py). The kube-proxy
stand-in is not part of the mesh: no certificate, no spans, no metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..model import Mesh, Pod
from ..telemetry import access_log as telemetry_log
from . import clusters, listeners, routes, tracing

PORT_FORWARD_SERVICE = "productpage"
PORT_FORWARD_PORT = 9080
_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


@dataclass(frozen=True)
class ProxyConfig:
    listeners: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ProxyFiles:
    """Where one proxy's files are, and who it is in them.

    `xds_dir` holds its configuration and its certificate's SDS files (envoy/sds_files.py);
    `access_log` is the text log a learner reads, `telemetry_log` the JSON one the request
    metrics come from; `node_id` is its node id, which it also sends with every request so the
    proxy at the other end can tell who called (istio-proxy's metadata exchange does the same).
    """

    xds_dir: str | os.PathLike[str]
    access_log: str
    node_id: str
    telemetry_log: str | None = None
    zipkin_port: int = tracing.ZIPKIN_PORT


def sidecar_config(mesh: Mesh, pod: Pod, files: ProxyFiles) -> ProxyConfig:
    return ProxyConfig(
        listeners=listeners.sidecar_listeners(
            pod,
            files.xds_dir,
            mesh=mesh,
            access_log_path=files.access_log,
            telemetry_log_path=files.telemetry_log,
            node_id=files.node_id,
            sds_dir=files.xds_dir,
        ),
        routes=[
            _with_peer_header(config, files.node_id)
            for config in routes.sidecar_route_configs(mesh, pod)
        ],
        clusters=[
            *clusters.outbound_clusters(mesh, pod, sds_dir=files.xds_dir),
            clusters.inbound_cluster(pod, mesh),
            tracing.zipkin_cluster(files.zipkin_port),
        ],
    )


def gateway_config(mesh: Mesh, files: ProxyFiles) -> ProxyConfig:
    return ProxyConfig(
        listeners=listeners.gateway_listeners(
            mesh,
            files.xds_dir,
            access_log_path=files.access_log,
            telemetry_log_path=files.telemetry_log,
            node_id=files.node_id,
        ),
        routes=[
            _with_peer_header(config, files.node_id)
            for config in routes.gateway_route_configs(mesh)
        ],
        clusters=[
            *clusters.outbound_clusters(mesh, mesh.gateway, sds_dir=files.xds_dir),
            tracing.zipkin_cluster(files.zipkin_port),
        ],
    )


def _with_peer_header(route_config: dict[str, Any], node_id: str) -> dict[str, Any]:
    """Every request the proxy sends carries its node id, for the receiving proxy's metrics."""
    if not node_id:
        return route_config
    return {
        **route_config,
        "request_headers_to_add": [
            {
                "header": {"key": telemetry_log.PEER_HEADER, "value": node_id},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def kube_proxy_config(
    mesh: Mesh, port: int, access_log: str, port_forward_port: int = PORT_FORWARD_PORT
) -> ProxyConfig:
    """The plain per-Service load balancer, and the port-forward to productpage."""
    forward_cluster = f"port-forward|{PORT_FORWARD_PORT}|{PORT_FORWARD_SERVICE}"
    forwarded = [
        pod
        for service in mesh.services
        if service.name == PORT_FORWARD_SERVICE and service.namespace == "default"
        for pod in mesh.pods_of(service)
    ]
    return ProxyConfig(
        listeners=[
            listeners.kube_proxy_listener(mesh, port, access_log_path=access_log),
            _port_forward_listener(forward_cluster, port_forward_port),
        ],
        clusters=[
            *clusters.kube_proxy_clusters(mesh),
            _port_forward_cluster(forward_cluster, forwarded),
        ],
    )


def _port_forward_listener(cluster: str, port: int) -> dict[str, Any]:
    # A port-forward is a TCP tunnel straight to a pod's port, past its sidecar (as kubectl's is).
    return {
        "name": f"port-forward_{port}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {
                            "@type": _TCP_PROXY,
                            "stat_prefix": "port_forward",
                            "cluster": cluster,
                        },
                    }
                ]
            }
        ],
    }


def _port_forward_cluster(name: str, pods: list[Pod]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": pod.address,
                                        "port_value": pod.app_port,
                                    }
                                }
                            }
                        }
                        for pod in pods
                    ]
                }
            ],
        },
    }
