"""Host names and gateway names in Istio resources, resolved and compared as istiod does.

- `resolve`: pkg/config/model.go ResolveShortnameToFQDN. Only a name with no dot is short:
  `reviews` in namespace default is reviews.default.svc.cluster.local. A name with a dot is taken
  as written (`reviews.default` stays `reviews.default`, `bookinfo.com` stays `bookinfo.com`),
  and so are `*` and IP addresses.
- `subset_of` / `matches` / `intersection`: pkg/config/host (Name.SubsetOf, Matches,
  Names.Intersection), the wildcard rules (`*.example.com` covers `a.example.com`; `*` covers all).
- `resolve_gateway_name`: pilot/pkg/model (resolveGatewayName). A VirtualService names gateways
  as `name` (in its own namespace), `ns/name`, `./name` or the legacy `name.ns.svc.cluster.local`;
  istiod turns each into `ns/name`. `mesh` (all sidecars) stays `mesh`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from ..model import CLUSTER_DOMAIN

MESH_GATEWAY = "mesh"


def resolve(host: str, namespace: str) -> str:
    if host == "*" or "." in host or _is_ip(host):
        return host.lower()
    return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}".lower()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def subset_of(name: str, other: str) -> bool:
    """Whether every host `name` stands for is also covered by `other`."""
    if is_wildcard(name):
        if not is_wildcard(other):
            return False
        return len(name) >= len(other) and name[1:].endswith(other[1:])
    if is_wildcard(other):
        return name.endswith(other[1:])
    return name == other


def matches(name: str, other: str) -> bool:
    return subset_of(name, other) or subset_of(other, name)


def intersection(hosts: Sequence[str], others: Sequence[str]) -> list[str]:
    """The more specific of each overlapping pair: server `*` and VS `a.com` give `a.com`."""
    result: list[str] = []
    for host in hosts:
        for other in others:
            if subset_of(host, other):
                found = host
            elif subset_of(other, host):
                found = other
            else:
                continue
            if found not in result:
                result.append(found)
    return result


def names_for_namespace(
    server_hosts: Iterable[str], namespace: str, gateway_namespace: str
) -> list[str]:
    """A Gateway server's hosts that a VirtualService in `namespace` may bind to.

    A server host may carry a namespace: `ns/host`, `*/host`, or `./host` (the Gateway's own
    namespace); a plain `host` is open to every namespace (host.NamesForNamespace).
    """
    result: list[str] = []
    for entry in server_hosts:
        host = entry
        if "/" in entry:
            allowed, host = entry.split("/", 1)
            if allowed == ".":
                allowed = gateway_namespace
            if allowed not in (namespace, "*"):
                continue
        result.append(host.lower())
    return result


def resolve_gateway_name(name: str, namespace: str) -> str:
    if name == MESH_GATEWAY:
        return name
    if "/" in name:
        gateway_namespace, gateway = name.split("/", 1)
        return f"{namespace if gateway_namespace == '.' else gateway_namespace}/{gateway}"
    if "." in name:  # legacy: bookinfo-gateway.default.svc.cluster.local
        gateway, rest = name.split(".", 1)
        return f"{rest.split('.', 1)[0]}/{gateway}"
    return f"{namespace}/{name}"


def virtual_service_gateways(spec: Mapping, namespace: str) -> set[str]:
    """The gateways a VirtualService is bound to; none listed means `mesh` (getGatewayNames)."""
    names = spec.get("gateways") or [MESH_GATEWAY]
    return {resolve_gateway_name(str(name), namespace) for name in names}


def visible(resource: Mapping, to_namespace: str) -> bool:
    """Whether a resource's `exportTo` lets a proxy in `to_namespace` see it (default: all)."""
    spec = resource.get("spec") or {}
    export_to = spec.get("exportTo") or ["*"]
    own = namespace_of(resource)
    for entry in export_to:
        if entry == "*" or entry == to_namespace or (entry == "." and own == to_namespace):
            return True
    return False


def namespace_of(resource: Mapping) -> str:
    return (resource.get("metadata") or {}).get("namespace") or "default"


def name_of(resource: Mapping) -> str:
    return (resource.get("metadata") or {}).get("name") or ""
