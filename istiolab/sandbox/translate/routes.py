"""RDS: the Envoy RouteConfigurations of a sidecar and of the ingress gateway.

Sidecar (`sidecar_route_configs`). Each app uses its sidecar as an HTTP proxy, Istio's
`proxyHttpPort` mode, whose listener reads one route config, `http_proxy`, with a virtual host
for every HTTP (or sniffed) port of every service in the mesh:

- virtual host `<fqdn>:<port>`, domains: every name a client in the pod's namespace could write,
  bare and with `:<port>`: `reviews.default.svc.cluster.local`, the absolute
  `reviews.default.svc.cluster.local.`, `reviews`, `reviews.default.svc`, `reviews.default` (a
  client in another namespace gets `reviews.default` and `reviews.default.svc` only). Envoy
  ignores the port of the Host header (`ignore_port_in_host_matching`, as on every Istio
  sidecar), so the bare names are the ones that match; Envoy refuses a name listed twice, so
  a service with several HTTP ports has its bare names on the first of them (in the Service's
  order), and is reached on that port through the proxy whatever port the client writes;
- its routes are those istiod puts in the sidecar's route config for that port: from the first
  VirtualService for the service that is bound to `mesh`, visible to the pod's namespace
  (`exportTo`) and leaves at least one route for this pod (`sourceLabels`, `gateways`, `port`
  of its matches), else Istio's default route (`default`: prefix `/`, no timeout, the default
  retry policy). (istiod builds its own `http_proxy` for "port 0", where a `match.port` never
  applies and only the `:<port>` domains survive; the sandbox instead gives every service port
  the routes a Kubernetes sidecar gets for that port, so a learner's VirtualService behaves
  as it does on a cluster);
- last, the catch-all virtual host. Istio's default, ALLOW_ANY, sends unknown hosts to
  `PassthroughCluster`, an ORIGINAL_DST cluster; behind an HTTP proxy the original destination
  is the proxy itself, so that cannot work here: the sandbox uses Istio's REGISTRY_ONLY form,
  `block_all`, which answers 502. (Calling services outside the mesh is the egress lab's topic.)

Gateway (`gateway_route_configs`). For the Istio `Gateway` resources that select the ingress
gateway's labels, one route config per port, `http.<port>`, with a virtual host
`<host>:<server port>` per server host that a bound VirtualService (`gateways: [name]`,
`[ns/name]`) also names, routes in VirtualService order with catch-all routes moved last, and a
`blackhole:<port>` virtual host with no routes (404) when nothing is bound.

Gateway ports. A Gateway server port is a port of the gateway's *Service*; istiod binds the
listener to the matching target port of the gateway pod. The sandbox's gateway is Istio's classic
istio-ingressgateway, whose Service maps 80 to 8080 and 443 to 8443, so both Istio's current
bookinfo-gateway (server port 8080, the pod port) and the older one (server port 80) give the pod
port 8080 and the route config `http.8080`, as on a cluster. The gateway's pod port 8080 is where
learners reach it, `mesh.gateway.port` (`gateway_listen_port`); other ports bind as they are.

Every RouteConfiguration carries Istio's settings: `validate_clusters: false` (a route to a
missing cluster answers 503 instead of the whole config being refused),
`max_direct_response_body_size_bytes: 1048576`, `ignore_port_in_host_matching: true`. The dicts
are Envoy v3 JSON without "@type"; whoever ships them as RDS resources adds
`ROUTE_CONFIGURATION_TYPE`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ..model import Mesh, Pod, Service
from . import names
from .hashing import consistent_hash, destination_hash, destination_rule, hash_policy
from .hosts import (
    MESH_GATEWAY,
    intersection,
    is_wildcard,
    name_of,
    names_for_namespace,
    namespace_of,
    resolve,
    subset_of,
    virtual_service_gateways,
    visible,
)
from .http_routes import RouteContext, virtual_service_routes
from .matches import is_catch_all
from .policies import retry_policy, timeout_fields
from .protocol import is_http, is_http_or_sniffed, parse

ROUTE_CONFIGURATION_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
HTTP_PROXY_ROUTE_CONFIG = "http_proxy"
DEFAULT_ROUTE = "default"
BLOCK_ALL = "block_all"
MAX_DIRECT_RESPONSE_BODY_SIZE_BYTES = 1024 * 1024

# Istio's classic istio-ingressgateway Service: port -> targetPort (the gateway pod's port).
GATEWAY_SERVICE_PORTS = {80: 8080, 443: 8443}
GATEWAY_POD_HTTP_PORT = 8080


def route_configuration(name: str, virtual_hosts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "virtual_hosts": virtual_hosts,
        "validate_clusters": False,
        "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BODY_SIZE_BYTES,
        "ignore_port_in_host_matching": True,
    }


def gateway_route_config_name(port: int) -> str:
    """http.8080: the RDS name of a gateway's plain-HTTP listener on pod port 8080."""
    return f"http.{port}"


def _ordered(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Oldest first, as istiod orders configs: creation time, then name, then namespace.

    Resources without a creationTimestamp keep the order they were applied in.
    """
    listed = list(resources)
    if all((r.get("metadata") or {}).get("creationTimestamp") for r in listed):
        return sorted(
            listed,
            key=lambda r: (
                str(r["metadata"]["creationTimestamp"]),
                name_of(r),
                namespace_of(r),
            ),
        )
    return listed


def virtual_services(mesh: Mesh) -> list[Mapping[str, Any]]:
    return _ordered(mesh.istio.get("VirtualService", ()))


def virtual_service_hosts(vs: Mapping[str, Any]) -> list[str]:
    namespace = namespace_of(vs)
    return [resolve(str(host), namespace) for host in (vs.get("spec") or {}).get("hosts") or ()]


# --- sidecar -------------------------------------------------------------------------------


def sidecar_route_configs(mesh: Mesh, pod: Pod) -> list[dict[str, Any]]:
    """The `http_proxy` route config of the pod's sidecar (none if the pod has no sidecar)."""
    if pod.sidecar is None:
        return []
    bound = [
        vs
        for vs in virtual_services(mesh)
        if visible(vs, pod.namespace)
        and MESH_GATEWAY in virtual_service_gateways(vs.get("spec") or {}, namespace_of(vs))
    ]
    virtual_hosts: list[dict[str, Any]] = []
    taken: set[str] = set()
    for service in sorted(mesh.services, key=lambda s: s.fqdn):
        for port in service.ports:
            if not is_http_or_sniffed(port):
                continue
            routes = _sidecar_routes(mesh, pod, service, port.port, bound)
            domains = service_domains(service, port.port, pod.namespace)
            domains = [domain for domain in domains if domain not in taken]
            taken.update(domains)
            virtual_hosts.append(
                {
                    "name": names.virtual_host(service.fqdn, port.port),
                    "domains": domains,
                    "routes": routes,
                    "include_request_attempt_count": True,
                }
            )
    virtual_hosts.sort(key=lambda vhost: vhost["name"])
    virtual_hosts.append(block_all_virtual_host())
    return [route_configuration(HTTP_PROXY_ROUTE_CONFIG, virtual_hosts)]


def _sidecar_routes(
    mesh: Mesh, pod: Pod, service: Service, port: int, bound: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The routes istiod puts in the pod's port-`port` route config for this service."""
    services = {
        other.fqdn: (port,) for other in mesh.services if any(p.port == port for p in other.ports)
    }
    for vs in _virtual_services_for(service, bound):
        context = RouteContext(
            listen_port=port,
            gateway_names={MESH_GATEWAY},
            proxy_labels=pod.labels,
            proxy_namespace=pod.namespace,
            services=services,
            hash_for=destination_hash(mesh, pod.namespace, namespace_of(vs)),
        )
        routes = virtual_service_routes(vs, context)
        if routes:
            return routes
    rule = destination_rule(mesh, service.fqdn, pod.namespace)
    spec = None if rule is None else rule.get("spec") or {}
    return [default_route(service, port, hash_policy(consistent_hash(spec, "", port)))]


def _virtual_services_for(
    service: Service, bound: list[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The VirtualServices whose hosts name the service, in order.

    A VirtualService naming it exactly always counts; of those naming it through a wildcard
    (`*.default.svc.cluster.local`), only the most specific one does.
    """
    exact: set[int] = set()
    wildcard: dict[int, int] = {}  # index -> length of its most specific matching host
    for index, vs in enumerate(bound):
        hosts = virtual_service_hosts(vs)
        if service.fqdn in hosts:
            exact.add(index)
        else:
            covering = [h for h in hosts if is_wildcard(h) and subset_of(service.fqdn, h)]
            if covering:
                wildcard[index] = max(len(h) for h in covering)
    chosen = set(exact)
    if wildcard:
        best = max(wildcard.values())
        chosen.add(min(index for index, length in wildcard.items() if length == best))
    return [vs for index, vs in enumerate(bound) if index in chosen]


def default_route(
    service: Service, port: int, hash_policy_: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Istio's route for a service no VirtualService routes (BuildDefaultHTTPOutboundRoute)."""
    timeouts = timeout_fields(None)
    action: dict[str, Any] = {
        "cluster": names.outbound_cluster(port, service.fqdn),
        "timeout": timeouts["timeout"],
        "retry_policy": retry_policy(None),
    }
    if hash_policy_ is not None:
        action["hash_policy"] = [dict(hash_policy_)]
    return {
        "name": DEFAULT_ROUTE,
        "match": {"prefix": "/"},
        "route": action,
        "decorator": {"operation": names.decorator(service.fqdn, port)},
    }


def service_domains(service: Service, port: int, client_namespace: str) -> list[str]:
    """The Host values that mean this service and port to a client in `client_namespace`."""
    fqdn = service.fqdn
    hosts = [fqdn, f"{fqdn}."]
    namespaced = f"{service.name}.{service.namespace}"
    if service.namespace == client_namespace:
        hosts += [service.name, f"{namespaced}.svc", namespaced]
    else:
        hosts += [namespaced, f"{namespaced}.svc"]
    return [domain for host in hosts for domain in (host, f"{host}:{port}")]


def block_all_virtual_host() -> dict[str, Any]:
    """REGISTRY_ONLY's catch-all: hosts that are not services get 502 (see the module doc)."""
    return {
        "name": BLOCK_ALL,
        "domains": ["*"],
        "routes": [
            {"name": BLOCK_ALL, "match": {"prefix": "/"}, "direct_response": {"status": 502}}
        ],
        "include_request_attempt_count": True,
    }


# --- gateway -------------------------------------------------------------------------------


def selected_gateways(mesh: Mesh) -> list[Mapping[str, Any]]:
    """The Istio Gateway resources whose selector matches the ingress gateway's labels."""
    labels = mesh.gateway.labels
    out = []
    for gateway in _ordered(mesh.istio.get("Gateway", ())):
        if not str(gateway.get("apiVersion", "networking.istio.io/")).startswith(
            "networking.istio.io/"
        ):
            continue  # a Kubernetes Gateway API Gateway is another translator's business
        selector = (gateway.get("spec") or {}).get("selector") or {}
        if all(labels.get(key) == value for key, value in selector.items()):
            out.append(gateway)
    return out


def gateway_pod_port(server_port: int) -> int:
    """The gateway pod port a Gateway server port means (its Service's targetPort)."""
    return GATEWAY_SERVICE_PORTS.get(server_port, server_port)


def gateway_listen_port(mesh: Mesh, pod_port: int) -> int:
    """Where the sandbox's gateway listens for a pod port: 8080 is mesh.gateway.port."""
    return mesh.gateway.port if pod_port == GATEWAY_POD_HTTP_PORT else pod_port


def _http_servers(mesh: Mesh) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(gateway ns/name, gateway, server) for each plain-HTTP server of the selected Gateways.

    HTTPS and TLS servers are left out: the sandbox's gateway does not terminate TLS.
    """
    out = []
    for gateway in selected_gateways(mesh):
        gateway_name = f"{namespace_of(gateway)}/{name_of(gateway)}"
        for server in (gateway.get("spec") or {}).get("servers") or ():
            port = server.get("port") or {}
            if port.get("number") is not None and is_http(parse(str(port.get("protocol", "")))):
                out.append((gateway_name, gateway, server))
    return out


def gateway_ports(mesh: Mesh) -> list[int]:
    """The gateway pod ports with an HTTP server, each a listener with RDS `http.<port>`."""
    servers = _http_servers(mesh)
    return sorted({gateway_pod_port(int(server["port"]["number"])) for _, _, server in servers})


def gateway_route_configs(mesh: Mesh) -> list[dict[str, Any]]:
    """One `http.<port>` route config per gateway pod port (see the module doc)."""
    by_port: dict[int, list] = {}
    for entry in _http_servers(mesh):
        by_port.setdefault(gateway_pod_port(int(entry[2]["port"]["number"])), []).append(entry)
    return [_gateway_route_config(mesh, port, servers) for port, servers in sorted(by_port.items())]


def _gateway_route_config(mesh: Mesh, port: int, servers: list) -> dict[str, Any]:
    """buildGatewayHTTPRouteConfig for the servers that share one pod port."""
    gateway = mesh.gateway
    registry = {service.fqdn: tuple(p.port for p in service.ports) for service in mesh.services}
    all_virtual_services = [vs for vs in virtual_services(mesh) if visible(vs, gateway.namespace)]
    built: dict[tuple[str, str], list[dict[str, Any]]] = {}
    vhosts: dict[str, dict[str, Any]] = {}

    for gateway_name, gateway_resource, server in servers:
        server_port = int(server["port"]["number"])
        https_redirect = bool((server.get("tls") or {}).get("httpsRedirect"))
        for vs in all_virtual_services:
            namespace = namespace_of(vs)
            if gateway_name not in virtual_service_gateways(vs.get("spec") or {}, namespace):
                continue
            vs_hosts = virtual_service_hosts(vs)
            server_hosts = names_for_namespace(
                server.get("hosts") or (), namespace, namespace_of(gateway_resource)
            )
            hosts = intersection(server_hosts, vs_hosts)
            if not hosts:
                continue
            key = (gateway_name, f"{name_of(vs)}/{namespace}")
            if key not in built:
                context = RouteContext(
                    listen_port=server_port,
                    gateway_names={gateway_name},
                    proxy_labels=gateway.labels,
                    proxy_namespace=gateway.namespace,
                    services=registry,
                    hash_for=destination_hash(mesh, gateway.namespace, namespace),
                )
                routes = virtual_service_routes(vs, context)
                if not routes:
                    continue
                built[key] = routes
            for host in hosts:
                if host in vhosts:
                    vhosts[host]["routes"].extend(built[key])
                else:
                    vhosts[host] = {
                        "name": names.virtual_host(host, server_port),
                        "domains": [host],
                        "routes": list(built[key]),
                        "include_request_attempt_count": True,
                    }
                if https_redirect:
                    vhosts[host]["require_tls"] = "ALL"
        if https_redirect:
            for host in (h.split("/", 1)[-1].lower() for h in server.get("hosts") or ()):
                if host in vhosts:
                    vhosts[host]["require_tls"] = "ALL"
                else:
                    vhosts[host] = {
                        "name": names.virtual_host(host, server_port),
                        "domains": [host],
                        "routes": [],
                        "include_request_attempt_count": True,
                        "require_tls": "ALL",
                    }

    if not vhosts:
        first_port = int(servers[0][2]["port"]["number"])
        virtual_hosts = [
            {"name": names.virtual_host("blackhole", first_port), "domains": ["*"], "routes": []}
        ]
    else:
        virtual_hosts = _collapse_duplicate_routes(vhosts)
        for vhost in virtual_hosts:
            vhost["routes"] = _catch_all_last(vhost["routes"])
    virtual_hosts.sort(key=lambda vhost: vhost["name"])
    # Routes built once are shared between virtual hosts above; hand out independent copies.
    return route_configuration(gateway_route_config_name(port), copy.deepcopy(virtual_hosts))


def _catch_all_last(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SortVHostRoutes: when several VirtualServices share a host, catch-alls go last."""
    return [r for r in routes if not is_catch_all(r)] + [r for r in routes if is_catch_all(r)]


def _collapse_duplicate_routes(vhosts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Istio's route-collapse optimisation: hosts with the very same routes share a vhost.

    The first host alphabetically keeps its virtual host and takes the others' domains.
    """
    kept: dict[str, dict[str, Any]] = {}
    by_routes: dict[tuple[int, ...], str] = {}
    for host in sorted(vhosts):
        vhost = vhosts[host]
        key = tuple(id(route) for route in vhost["routes"])
        primary = by_routes.get(key)
        if (
            primary is not None
            and kept[primary].get("require_tls") == vhost.get("require_tls")
            and kept[primary]["include_request_attempt_count"]
            == vhost["include_request_attempt_count"]
        ):
            kept[primary]["domains"].extend(vhost["domains"])
        else:
            by_routes[key] = host
            kept[host] = vhost
    return list(kept.values())
