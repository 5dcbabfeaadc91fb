"""Istio's names for Envoy objects, kept exactly so `proxy-config` output and istio.io line up.

outbound|9080|v1|reviews.default.svc.cluster.local   a cluster: direction|port|subset|host
inbound|9080||                                       the cluster in front of the local app
reviews.default.svc.cluster.local:9080               a virtual host
reviews.default.svc.cluster.local:9080/*             the decorator (span name) of its routes
"""

from __future__ import annotations


def outbound_cluster(port: int, host: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def virtual_host(host: str, port: int) -> str:
    return f"{host}:{port}"


def decorator(host: str, port: int) -> str:
    return f"{host}:{port}/*"
