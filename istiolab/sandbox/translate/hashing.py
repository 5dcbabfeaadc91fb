"""Consistent-hash load balancing: the part of a DestinationRule that lands in the routes.

A DestinationRule's `loadBalancer.consistentHash` makes the cluster a ring hash; what is hashed
(a header, a cookie, the source IP, a query parameter) is a route setting, `hash_policy`, so
istiod adds it to every route towards that destination (consistentHashToHashPolicy). The most
specific setting wins: the subset's port-level one, the subset's, the rule's port-level one, the
rule's (hashForHTTPDestination).

Which DestinationRule applies to a host, simplified from istiod's lookup: one in the proxy's
namespace first, then one in the host's own namespace, then one in istio-system (the root
namespace); within each, the first applied whose host is the same, else the most specific
wildcard host covering it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..model import Mesh
from .durations import envoy_duration
from .hosts import is_wildcard, namespace_of, resolve, subset_of, visible

ROOT_NAMESPACE = "istio-system"


def destination_rule(mesh: Mesh, host: str, proxy_namespace: str) -> Mapping[str, Any] | None:
    rules = [
        rule for rule in mesh.istio.get("DestinationRule", ()) if visible(rule, proxy_namespace)
    ]
    host_namespace = host.split(".")[1] if host.count(".") >= 2 else ""
    for namespace in dict.fromkeys((proxy_namespace, host_namespace, ROOT_NAMESPACE)):
        candidates: list[tuple[str, Mapping[str, Any]]] = []
        for rule in rules:
            if namespace_of(rule) != namespace:
                continue
            rule_host = resolve(str((rule.get("spec") or {}).get("host", "")), namespace)
            if rule_host == host:
                return rule
            if is_wildcard(rule_host) and subset_of(host, rule_host):
                candidates.append((rule_host, rule))
        if candidates:
            return max(candidates, key=lambda candidate: len(candidate[0]))[1]
    return None


def destination_hash(
    mesh: Mesh, proxy_namespace: str, namespace: str
) -> Callable[[Mapping[str, Any]], Mapping[str, Any] | None]:
    """For a proxy: a route destination (in a VS in `namespace`) to its consistentHash, if any.

    Only an explicit destination port selects port-level settings (as in istiod).
    """

    def lookup(destination: Mapping[str, Any]) -> Mapping[str, Any] | None:
        host = resolve(str(destination.get("host", "")), namespace)
        rule = destination_rule(mesh, host, proxy_namespace)
        port = (destination.get("port") or {}).get("number")
        spec = None if rule is None else rule.get("spec") or {}
        return consistent_hash(spec, str(destination.get("subset") or ""), port)

    return lookup


def _port_level(settings: Sequence[Mapping[str, Any]], port: int | None) -> Mapping | None:
    if port is None:
        return None
    for setting in settings:
        if (setting.get("port") or {}).get("number") == port:
            return ((setting.get("loadBalancer") or {}).get("consistentHash")) or None
    return None


def consistent_hash(
    spec: Mapping[str, Any] | None, subset: str, port: int | None
) -> Mapping[str, Any] | None:
    """The consistentHash settings that apply to (subset, port) under a DestinationRule spec."""
    if spec is None:
        return None
    policy = spec.get("trafficPolicy") or {}
    found = ((policy.get("loadBalancer") or {}).get("consistentHash")) or None
    port_found = _port_level(policy.get("portLevelSettings") or (), port)
    subset_found = subset_port_found = None
    for entry in spec.get("subsets") or ():
        if entry.get("name") == subset:
            subset_policy = entry.get("trafficPolicy") or {}
            subset_found = ((subset_policy.get("loadBalancer") or {}).get("consistentHash")) or None
            subset_port_found = _port_level(subset_policy.get("portLevelSettings") or (), port)
            break
    return subset_port_found or subset_found or port_found or found


def hash_policy(settings: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A consistentHash as an Envoy RouteAction.HashPolicy (None: not a hash Envoy can use)."""
    if not settings:
        return None
    if settings.get("httpHeaderName"):
        return {"header": {"header_name": settings["httpHeaderName"]}}
    if settings.get("httpCookie"):
        cookie = settings["httpCookie"]
        out: dict[str, Any] = {"name": cookie.get("name", "")}
        if cookie.get("ttl"):
            out["ttl"] = envoy_duration(cookie["ttl"])
        if cookie.get("path"):
            out["path"] = cookie["path"]
        return {"cookie": out}
    if settings.get("useSourceIp"):
        return {"connection_properties": {"source_ip": True}}
    if settings.get("httpQueryParameterName"):
        return {"query_parameter": {"name": settings["httpQueryParameterName"]}}
    return None
