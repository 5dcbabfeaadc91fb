"""Istio's names for Envoy objects, kept exactly so `proxy-config` output and istio.io line up.

outbound|9080|v1|reviews.default.svc.cluster.local   a cluster: direction|port|subset|host
inbound|9080||                                       the cluster in front of the local app
reviews.default.svc.cluster.local:9080               a virtual host
reviews.default.svc.cluster.local:9080/*             the decorator (span name) of its routes
"""

from __future__ import annotations

from ..model import CLUSTER_DOMAIN


def outbound_cluster(port: int, host: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def virtual_host(host: str, port: int) -> str:
    return f"{host}:{port}"


def decorator(host: str, port: int) -> str:
    return f"{host}:{port}/*"


def fqdn(host: str, namespace: str) -> str:
    """A host as a VirtualService or DestinationRule writes it, resolved like istiod does.

    Short names are relative to the resource's namespace: `reviews` in `default` is
    reviews.default.svc.cluster.local; `reviews.other` is in namespace `other`.
    """
    if host.endswith(f".svc.{CLUSTER_DOMAIN}") or host == "*" or host.startswith("*."):
        return host
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"
    if len(parts) == 2:
        return f"{parts[0]}.{parts[1]}.svc.{CLUSTER_DOMAIN}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.{CLUSTER_DOMAIN}"
    return host  # an external name (a ServiceEntry host), used as written
