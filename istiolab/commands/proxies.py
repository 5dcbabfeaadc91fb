"""`istiolab proxy-config` and `istiolab logs`: what istioctl proxy-config and kubectl logs show.

    istiolab proxy-config listeners|routes|clusters|endpoints WORKLOAD [-n NS] [-o short|json|yaml]
    istiolab proxy-config secret WORKLOAD [-n NS] [-o short|json|yaml]
    istiolab proxy-config bootstrap WORKLOAD [-o json|yaml]
    istiolab proxy-config log WORKLOAD [--level LEVEL | --reset]
    istiolab logs WORKLOAD [-n NS] [--proxy | -c istio-proxy] [--tail N]

WORKLOAD is a pod name (`productpage-v1-6575779f86-dz44n`), the start of one such as a deployment
name (`productpage-v1`, when it matches a single pod), `POD.NAMESPACE` like istioctl, or
`istio-ingressgateway` (in istio-system). `pc` is short for `proxy-config`, as with istioctl.

The control plane's /proxies call says where each proxy's Envoy admin API and each log file is;
the rest comes from Envoy itself (/config_dump, /clusters, /certs, /logging), and the tables are
built from it the way istioctl builds them, with istioctl's columns.
"""

from __future__ import annotations

import argparse
import http.client
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from ..errors import EXIT_USAGE, IstiolabError
from ..sandbox import api, lifecycle
from ..sandbox.envoy.admin import AdminUnavailable, EnvoyAdmin
from ..table import format_table

GATEWAY = "istio-ingressgateway"
GATEWAY_NAMESPACE = "istio-system"
DEFAULT_NAMESPACE = "default"
SIDECAR_CONTAINER = "istio-proxy"
HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
ISTIO_METADATA = "istio"
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
DEFAULT_LOG_LEVEL = "warning"  # what istioctl proxy-config log --reset sets

LISTENER_HEADER = ("ADDRESSES", "PORT", "MATCH", "DESTINATION")
ROUTE_HEADER = ("NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE")
CLUSTER_HEADER = ("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE")
ENDPOINT_HEADER = ("ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER")
# istioctl's columns, plus the SPIFFE identity, which istioctl shows only with -o json.
SECRET_HEADER = (
    "RESOURCE NAME",
    "TYPE",
    "STATUS",
    "VALID CERT",
    "SERIAL NUMBER",
    "NOT AFTER",
    "NOT BEFORE",
    "IDENTITY",
)
# Istio's SDS resource names, which the sandbox's SDS files use too (envoy/sds_files.py: not
# imported, to keep the command from loading the cryptography library).
DEFAULT_SECRET = "default"  # noqa: S105 - the workload's key and certificate chain
ROOT_SECRET = "ROOTCA"  # noqa: S105 - the root certificate peers are checked against
NO_SECRETS = (
    "No secret items to show: this proxy has loaded no certificate "
    "(none of its listeners or clusters uses TLS)."
)

# Where each kind of resource sits in its /config_dump section: (list, path to the resource).
_SECTION_LISTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "listeners": (
        ("dynamic_listeners", ("active_state", "listener")),
        ("static_listeners", ("listener",)),
    ),
    "routes": (
        ("dynamic_route_configs", ("route_config",)),
        ("static_route_configs", ("route_config",)),
    ),
    "clusters": (
        ("dynamic_active_clusters", ("cluster",)),
        ("static_clusters", ("cluster",)),
    ),
}
_SECTION_TYPES = {
    "listeners": "ListenersConfigDump",
    "routes": "RoutesConfigDump",
    "clusters": "ClustersConfigDump",
    "bootstrap": "BootstrapConfigDump",
}

# istioctl's names for a filter chain's ALPN lists (istioctl/pkg/writer/envoy/configdump).
_ALPN_DESCRIPTIONS = (
    (
        "App: HTTP TLS",
        ["http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"],
    ),
    ("App: Istio HTTP Plain", ["istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"]),
    ("App: TCP TLS", ["istio-peer-exchange", "istio"]),
    ("App: HTTP", ["http/1.0", "http/1.1", "h2c"]),
)


# ============================================================================================
# The command line


def register(commands: argparse._SubParsersAction) -> None:
    proxy_config = commands.add_parser(
        "proxy-config",
        aliases=["pc"],
        help="show a proxy's Envoy configuration (istioctl proxy-config)",
        description="Show what a sidecar's or the ingress gateway's Envoy runs, read from its "
        "admin API, in the tables istioctl proxy-config prints.",
    )
    types = proxy_config.add_subparsers(dest="config_type", required=True, metavar="TYPE")

    listeners = _config_type(types, "listeners", ["listener", "l"], "listeners (LDS)")
    listeners.add_argument("--port", type=int, help="only the listener on this port")
    listeners.add_argument("--address", help="only listeners on this address")
    _output(listeners)
    listeners.set_defaults(handler=_listeners)

    routes = _config_type(types, "routes", ["route", "r"], "route configurations (RDS)")
    routes.add_argument("--name", help="only the route configuration with this name")
    _output(routes)
    routes.set_defaults(handler=_routes)

    clusters = _config_type(types, "clusters", ["cluster", "c"], "clusters (CDS)")
    clusters.add_argument("--fqdn", help="only clusters whose name contains this host")
    clusters.add_argument("--port", type=int, help="only clusters for this port")
    clusters.add_argument("--subset", help="only clusters of this subset")
    clusters.add_argument("--direction", choices=("inbound", "outbound"))
    _output(clusters)
    clusters.set_defaults(handler=_clusters)

    endpoints = _config_type(types, "endpoints", ["endpoint", "ep"], "endpoints and their health")
    endpoints.add_argument("--cluster", help="only endpoints of this cluster")
    endpoints.add_argument("--status", help="only endpoints with this status, e.g. healthy")
    endpoints.add_argument("--port", type=int, help="only endpoints on this port")
    endpoints.add_argument("--address", help="only endpoints on this address")
    _output(endpoints)
    endpoints.set_defaults(handler=_endpoints)

    secret = _config_type(
        types, "secret", ["secrets", "s", "sec"], "the certificates the proxy has loaded (SDS)"
    )
    secret.add_argument(
        "-o",
        "--output",
        choices=("short", "json", "yaml"),
        default="short",
        help="short: a table (default); json, yaml: what Envoy's /certs answered",
    )
    secret.set_defaults(handler=_secrets)

    bootstrap = _config_type(types, "bootstrap", ["b"], "the bootstrap configuration")
    bootstrap.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    bootstrap.set_defaults(handler=_bootstrap)

    log = _config_type(types, "log", ["o"], "Envoy's logging levels (show or change)")
    change = log.add_mutually_exclusive_group()
    change.add_argument(
        "--level",
        help="a level for every logger, or LOGGER:LEVEL[,LOGGER:LEVEL...]; levels: "
        + ", ".join(LOG_LEVELS),
    )
    change.add_argument(
        "--reset", action="store_true", help=f"set every logger back to {DEFAULT_LOG_LEVEL}"
    )
    log.set_defaults(handler=_log)

    logs = commands.add_parser(
        "logs",
        help="print a pod's log, or its sidecar's access log (kubectl logs)",
        description="Print the application's log, or with --proxy (-c istio-proxy) the "
        "sidecar's access log in Istio's default format. istio-ingressgateway prints the "
        "gateway's access log.",
    )
    logs.add_argument("workload", metavar="WORKLOAD", help=_WORKLOAD_HELP)
    _namespace(logs)
    logs.add_argument(
        "--proxy", action="store_true", help="the sidecar's access log (same as -c istio-proxy)"
    )
    logs.add_argument("-c", "--container", help="istio-proxy for the sidecar, else the app")
    logs.add_argument(
        "--tail", type=int, default=-1, help="only the last N lines (default: all of them)"
    )
    logs.set_defaults(handler=_logs)


_WORKLOAD_HELP = (
    "a pod name, its start (e.g. productpage-v1) if it matches one pod, POD.NAMESPACE, "
    "or istio-ingressgateway"
)


def _config_type(
    types: argparse._SubParsersAction, name: str, aliases: list[str], what: str
) -> argparse.ArgumentParser:
    parser = types.add_parser(name, aliases=aliases, help=what, description=f"Show {what}.")
    parser.add_argument("workload", metavar="WORKLOAD", help=_WORKLOAD_HELP)
    _namespace(parser)
    return parser


def _namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        help="the pod's namespace (default: default; istio-system for the ingress gateway)",
    )


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("short", "json", "yaml"),
        default="short",
        help="short: a table (default); json, yaml: the raw /config_dump section",
    )


# --------------------------------------------------------------------------------------------
# Handlers


def _listeners(args: argparse.Namespace) -> int:
    section = _section(_proxy_admin(args, "listeners"), "listeners")

    def keep(listener: Mapping[str, Any]) -> bool:
        address, port = _socket_address(listener.get("address"))
        return (args.port is None or port == args.port) and (
            args.address is None or address == args.address
        )

    return _show(args, section, "listeners", keep, format_listeners)


def _routes(args: argparse.Namespace) -> int:
    section = _section(_proxy_admin(args, "routes"), "routes")
    return _show(
        args,
        section,
        "routes",
        lambda route: args.name is None or route.get("name") == args.name,
        format_routes,
    )


def _clusters(args: argparse.Namespace) -> int:
    section = _section(_proxy_admin(args, "clusters"), "clusters")

    def keep(cluster: Mapping[str, Any]) -> bool:
        name = str(cluster.get("name", ""))
        parsed = parse_cluster_name(name)
        if args.fqdn and args.fqdn not in name:
            return False
        if args.port is not None and f"|{args.port}|" not in name:
            return False
        if args.subset and (parsed is None or parsed[2] != args.subset):
            return False
        return not args.direction or (parsed is not None and parsed[0] == args.direction)

    return _show(args, section, "clusters", keep, format_clusters)


def _endpoints(args: argparse.Namespace) -> int:
    statuses = _proxy_admin(args, "endpoints").clusters_json()

    def keep(host: Mapping[str, Any], cluster: str) -> bool:
        address, port = _host_address(host)
        return (
            (args.cluster is None or cluster.lower() == args.cluster.lower())
            and (args.status is None or _health(host).lower() == args.status.lower())
            and (args.port is None or port == args.port)
            and (args.address is None or address == args.address)
        )

    if args.output == "short":
        print(format_endpoints(statuses, keep))
    else:
        kept = [
            cluster
            for cluster in statuses.get("cluster_statuses", [])
            if any(keep(h, cluster.get("name", "")) for h in cluster.get("host_statuses", []))
        ]
        _dump({**statuses, "cluster_statuses": kept}, args.output)
    return 0


def _secrets(args: argparse.Namespace) -> int:
    certs = _proxy_admin(args, "secret").certs()
    if args.output == "short":
        print(format_secrets(certs))
    else:
        _dump(certs, args.output)
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    _dump(_section(_proxy_admin(args, "bootstrap"), "bootstrap"), args.output)
    return 0


def _log(args: argparse.Namespace) -> int:
    entry = _workload(args, "log")
    admin = _admin_of(entry)
    if args.reset or args.level:
        query = _logging_query(DEFAULT_LOG_LEVEL if args.reset else args.level)
        _post(admin, f"/logging?{query}")
    print(f"{entry['name']}.{entry['namespace']}:")
    print(_post(admin, "/logging").rstrip())
    return 0


def _logs(args: argparse.Namespace) -> int:
    entry = find_workload(_all_proxies(), args.workload, args.namespace, command="istiolab logs")
    if args.container not in (None, SIDECAR_CONTAINER, _app_container(entry)):
        containers = ", ".join(_containers(entry))
        raise IstiolabError(
            f"container {args.container} is not valid for pod {entry['name']}",
            fix=f"choose one of: [{containers}]",
            exit_code=EXIT_USAGE,
        )
    proxy = args.proxy or args.container == SIDECAR_CONTAINER or entry["kind"] == "gateway"
    if proxy and "access_log" not in entry:
        raise IstiolabError(
            f"{entry['name']} has no sidecar: there is no istio-proxy container, and no access "
            "log to show",
            fix=_injection_fix(entry["namespace"]),
        )
    for line in read_log(Path(entry["access_log"] if proxy else entry["app_log"]), args.tail):
        print(line)
    return 0


# ============================================================================================
# Finding the proxy


def _all_proxies() -> list[dict[str, Any]]:
    port = lifecycle.control_plane_port(lifecycle.state_dir())
    if port is None:
        raise IstiolabError("the sandbox is not running", fix="istiolab up")
    return api.call(port, "/proxies")


def _workload(args: argparse.Namespace, config_type: str) -> dict[str, Any]:
    command = f"istiolab proxy-config {config_type}"
    entry = find_workload(_all_proxies(), args.workload, args.namespace, command=command)
    if "admin_port" not in entry:
        raise IstiolabError(
            f"{entry['name']} has no sidecar: there is no proxy configuration to show",
            fix=_injection_fix(entry["namespace"]),
        )
    return entry


def _proxy_admin(args: argparse.Namespace, config_type: str) -> EnvoyAdmin:
    return _admin_of(_workload(args, config_type))


def _admin_of(entry: Mapping[str, Any]) -> EnvoyAdmin:
    return EnvoyAdmin(
        int(entry["admin_port"]),
        proxy=f"{entry['name']}.{entry['namespace']}",
        log_path=entry.get("envoy_log"),
        timeout=10.0,
    )


def _injection_fix(namespace: str) -> str:
    return (
        f"label the namespace for sidecar injection and restart its pods: istiolab label "
        f"namespace {namespace} istio-injection=enabled && istiolab rollout restart deployment "
        f"-n {namespace}"
    )


_TYPE_PREFIXES = ("pod/", "pods/", "po/", "deployment/", "deployments/", "deploy/")


def find_workload(
    entries: Sequence[Mapping[str, Any]],
    workload: str,
    namespace: str | None = None,
    *,
    command: str = "istiolab proxy-config clusters",
) -> dict[str, Any]:
    """The one /proxies entry WORKLOAD names (see the module's docstring), or an IstiolabError
    that says which pods there are."""
    name = workload
    kind, slash, rest = name.partition("/")
    by_deployment = False
    if slash and f"{kind}/" in _TYPE_PREFIXES:
        name, by_deployment = rest, kind.startswith("deploy")
    base, dot, suffix = name.rpartition(".")
    if dot and base:  # POD.NAMESPACE, as istioctl reads it
        name, namespace = base, suffix
    if namespace is None:
        namespace = GATEWAY_NAMESPACE if name.startswith(GATEWAY) else DEFAULT_NAMESPACE
    in_namespace = [dict(e) for e in entries if e.get("namespace") == namespace]
    for entry in in_namespace:
        if entry["name"] == name:
            return entry
    matches = [e for e in in_namespace if e["name"].startswith(name + "-")] or [
        e for e in in_namespace if e["name"].startswith(name)
    ]
    if len(matches) == 1 or (matches and by_deployment):  # kubectl picks a deployment's first pod
        return matches[0]
    if not matches:
        names = [e["name"] for e in in_namespace]
        raise IstiolabError(
            f'no pod in namespace {namespace} is named "{name}" or starts with it',
            fix=f"name one of: {', '.join(names)}"
            if names
            else f"list the pods with: istiolab get pods -n {namespace}",
        )
    names = [e["name"] for e in matches]
    raise IstiolabError(
        f'"{name}" matches {len(names)} pods in namespace {namespace}: {", ".join(names)}',
        fix=f"name one of them, e.g. {command} {names[0]}",
    )


def _app_container(entry: Mapping[str, Any]) -> str | None:
    if entry.get("kind") == "gateway":
        return None
    return (entry.get("labels") or {}).get("app") or entry["name"]


def _containers(entry: Mapping[str, Any]) -> list[str]:
    app = _app_container(entry)
    sidecar = [SIDECAR_CONTAINER] if "access_log" in entry else []
    return [*([app] if app else []), *sidecar]


# ============================================================================================
# Talking to Envoy


def _section(admin: EnvoyAdmin, what: str) -> dict[str, Any]:
    """One section of /config_dump (e.g. the ListenersConfigDump), as Envoy wrote it."""
    wanted = _SECTION_TYPES[what]
    for config in admin.config_dump().get("configs", []):
        if str(config.get("@type", "")).endswith("." + wanted):
            return config
    return {"@type": f"type.googleapis.com/envoy.admin.v3.{wanted}"}


def _post(admin: EnvoyAdmin, path: str) -> str:
    """POST to the admin API (Envoy refuses GET for endpoints that can change something)."""
    connection = http.client.HTTPConnection("127.0.0.1", admin.port, timeout=admin.timeout)
    try:
        connection.request("POST", path)
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
    except OSError as error:
        raise AdminUnavailable(
            f"{admin.proxy}: no answer from its Envoy admin API on 127.0.0.1:{admin.port} "
            f"({error})",
            fix="check that the proxy is running (istiolab status)",
        ) from error
    finally:
        connection.close()
    if response.status != 200:
        raise IstiolabError(f"{admin.proxy}: Envoy refused {path}: {body.strip()[:300]}")
    return body


def _logging_query(level: str) -> str:
    """`debug` -> level=debug; `router:debug,http:info` -> paths=router:debug,http:info."""
    if ":" not in level:
        _check_level(level)
        return f"level={quote(level)}"
    for pair in level.split(","):
        _check_level(pair.partition(":")[2])
    return f"paths={quote(level, safe=':,')}"


def _check_level(level: str) -> None:
    if level not in LOG_LEVELS:
        raise IstiolabError(
            f"unknown log level {level!r}",
            fix=f"use one of: {', '.join(LOG_LEVELS)}",
            exit_code=EXIT_USAGE,
        )


def _show(
    args: argparse.Namespace,
    section: Mapping[str, Any],
    what: str,
    keep: Callable[[Mapping[str, Any]], bool],
    table: Callable[[list[dict[str, Any]]], str],
) -> int:
    kept = filter_section(section, what, keep)
    if args.output == "short":
        print(table(resources_of(kept, what)))
    else:
        _dump(kept, args.output)
    return 0


def _dump(data: Any, output: str) -> None:
    if output == "yaml":
        print(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        print(json.dumps(data, indent=2))


# ============================================================================================
# The tables (pure functions over what Envoy answered)


def resources_of(section: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """The listeners, route configurations or clusters in a /config_dump section, dynamic ones
    first (as istioctl reads them)."""
    return [resource for _, _, resource in _walk(section, what)]


def filter_section(
    section: Mapping[str, Any], what: str, keep: Callable[[Mapping[str, Any]], bool]
) -> dict[str, Any]:
    """The section with only the resources `keep` accepts."""
    out = dict(section)
    for key, path in _SECTION_LISTS[what]:
        if key in section:
            out[key] = [item for item in section[key] if keep(_dig(item, path) or {})]
    return out


def _walk(section: Mapping[str, Any], what: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    for key, path in _SECTION_LISTS[what]:
        for item in section.get(key) or []:
            resource = _dig(item, path)
            if isinstance(resource, dict):
                yield key, item, resource


def _dig(data: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# --- listeners ------------------------------------------------------------------------------


def format_listeners(listeners: Sequence[Mapping[str, Any]]) -> str:
    """ADDRESSES PORT MATCH DESTINATION: one row per filter chain, as istioctl prints them."""
    return format_table(LISTENER_HEADER, listener_rows(listeners))


def listener_rows(listeners: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, str, str]]:
    def order(listener: Mapping[str, Any]) -> tuple[int, str, str]:
        address, port = _socket_address(listener.get("address"))
        return port or 0, address, _listener_type(listener)

    rows = []
    for listener in sorted(listeners, key=order):
        address, port = _socket_address(listener.get("address"))
        addresses = [address] + [
            _socket_address(extra.get("address"))[0]
            for extra in listener.get("additional_addresses") or []
        ]
        chains = [_describe_chain(chain) for chain in listener.get("filter_chains") or []]
        for match, destination in sorted(chains, key=lambda c: c[1], reverse=True):
            rows.append((",".join(a for a in addresses if a), port or 0, match, destination))
    return rows


def _socket_address(address: Any) -> tuple[str, int | None]:
    socket = address.get("socket_address") if isinstance(address, dict) else None
    if not isinstance(socket, dict):
        pipe = address.get("pipe") if isinstance(address, dict) else None
        return (f"unix://{pipe.get('path', '')}" if isinstance(pipe, dict) else ""), None
    port = socket.get("port_value")
    return str(socket.get("address", "")), int(port) if port is not None else None


def _listener_type(listener: Mapping[str, Any]) -> str:
    names = {
        f.get("name") for c in listener.get("filter_chains") or [] for f in c.get("filters") or []
    }
    http, tcp = HCM in names, TCP_PROXY in names
    return "HTTP+TCP" if http and tcp else "HTTP" if http else "TCP" if tcp else "UNKNOWN"


def _describe_chain(chain: Mapping[str, Any]) -> tuple[str, str]:
    match = chain.get("filter_chain_match") or {}
    parts = []
    if match.get("server_names"):
        parts.append("SNI: " + ",".join(match["server_names"]))
    if match.get("transport_protocol"):
        parts.append(f"Trans: {match['transport_protocol']}")
    alpn = match.get("application_protocols")
    if alpn:
        named = [name for name, protocols in _ALPN_DESCRIPTIONS if protocols == list(alpn)]
        parts.append(named[0] if named else "App: " + ",".join(alpn))
    port = f":{match['destination_port']}" if match.get("destination_port") is not None else ""
    if match.get("address_suffix"):
        parts.append(f"Addr: {match['address_suffix']}{port}")
    elif match.get("prefix_ranges"):
        ranges = ",".join(
            f"{r.get('address_prefix', '')}/{r.get('prefix_len', 0)}"
            for r in match["prefix_ranges"]
        )
        parts.append(f"Addr: {ranges}{port}")
    elif port:
        parts.append(f"Addr: *{port}")
    return "; ".join(parts) or "ALL", _chain_destination(chain.get("filters") or [])


def _chain_destination(filters: Sequence[Mapping[str, Any]]) -> str:
    for network_filter in filters:
        config = network_filter.get("typed_config") or {}
        if network_filter.get("name") == HCM:
            if config.get("route_config") is not None:
                return _describe_inline_routes(config["route_config"])
            name = (config.get("rds") or {}).get("route_config_name")
            return f"Route: {name}" if name else "HTTP"
        if network_filter.get("name") == TCP_PROXY:
            cluster = config.get("cluster")
            if cluster is None:
                weighted = (config.get("weighted_clusters") or {}).get("clusters") or []
                cluster = ",".join(str(c.get("name", "")) for c in weighted)
            return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
    return "Non-HTTP/Non-TCP"


def _describe_inline_routes(route_config: Mapping[str, Any]) -> str:
    hosts = []
    for vhost in route_config.get("virtual_hosts") or []:
        domains = vhost.get("domains") or []
        matches = ", ".join(describe_match(r.get("match") or {}) for r in vhost.get("routes") or [])
        hosts.append(matches if domains == ["*"] else f"{'/'.join(domains)} {matches}")
    return "Inline Route: " + "; ".join(hosts)


# --- routes ---------------------------------------------------------------------------------


def format_routes(route_configs: Sequence[Mapping[str, Any]]) -> str:
    """NAME VHOST NAME DOMAINS MATCH VIRTUAL SERVICE: one row per route."""
    return format_table(ROUTE_HEADER, route_rows(route_configs))


def route_rows(route_configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    def order(indexed: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
        index, config = indexed
        name = str(config.get("name", ""))
        # istioctl sorts the numbered route configurations (the ports) and leaves the others.
        return (0, int(name), index) if name.isdigit() else (1, 0, index)

    rows = []
    for _, config in sorted(enumerate(route_configs), key=order):
        name = str(config.get("name", ""))
        for vhost in config.get("virtual_hosts") or []:
            domains = describe_domains(vhost.get("domains") or [])
            routes = vhost.get("routes") or []
            for route in routes:
                if (route.get("route") or {}).get("cluster") == "PassthroughCluster":
                    continue
                rows.append(
                    (
                        name,
                        str(vhost.get("name", "")),
                        domains,
                        describe_match(route.get("match") or {}),
                        describe_config(route.get("metadata")),
                    )
                )
            if not routes:
                rows.append((name, str(vhost.get("name", "")), domains, "/*", "404"))
    return rows


def describe_domains(domains: Sequence[str]) -> str:
    """istioctl's short form: the names without a port, minus the longer spellings of a name
    also listed (reviews.default.svc.cluster.local when reviews.default is), at most two."""
    if len(domains) <= 1:
        return domains[0] if domains else ""
    without_port = [d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    listed = set(without_port)
    shorter = [
        d
        for d in without_port
        if not any(
            d.endswith(suffix) and d[: -len(suffix)] in listed
            for suffix in (".svc.cluster.local", ".svc", ".")
        )
    ]
    if len(shorter) > 2:
        return f"{', '.join(shorter[:2])} + {len(shorter) - 2} more..."
    return ", ".join(shorter)


def describe_match(match: Mapping[str, Any]) -> str:
    """A route's path match as istioctl writes it: `/static*`, `/login`, `regex ^/api.*`
    (header and query parameter conditions are left out, as istioctl leaves them out)."""
    conditions = []
    if "prefix" in match:
        conditions.append(f"{match['prefix']}*")
    if "path_separated_prefix" in match:
        conditions.append(f"PathPrefix:{match['path_separated_prefix']}")
    if "path" in match:
        conditions.append(str(match["path"]))
    if "safe_regex" in match:
        conditions.append(f"regex {(match['safe_regex'] or {}).get('regex', '')}")
    return " ".join(conditions)


def describe_config(metadata: Any) -> str:
    """The Istio resource behind a route or cluster, from its metadata, as `name.namespace`."""
    istio = _dig(metadata, ("filter_metadata", ISTIO_METADATA))
    path = istio.get("config") if isinstance(istio, dict) else None
    if not path:
        return ""
    # /apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews
    pieces = str(path).split("/")
    if len(pieces) == 8 and pieces[1] == "apis" and pieces[4] == "namespaces":
        return f"{pieces[7]}.{pieces[5]}"
    return "<unknown>"


# --- clusters -------------------------------------------------------------------------------


def parse_cluster_name(name: str) -> tuple[str, int, str, str] | None:
    """`outbound|9080|v1|reviews.default.svc.cluster.local` -> ("outbound", 9080, "v1", FQDN);
    `inbound|9080||` -> ("inbound", 9080, "", ""); None for other names (Istio's
    ParseSubsetKey)."""
    parts = name.split("|")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    direction, port, subset, fqdn = parts
    return direction, int(port), subset, fqdn


def format_clusters(clusters: Sequence[Mapping[str, Any]]) -> str:
    """SERVICE FQDN PORT SUBSET DIRECTION TYPE DESTINATION RULE."""
    return format_table(CLUSTER_HEADER, cluster_rows(clusters))


def cluster_rows(
    clusters: Sequence[Mapping[str, Any]],
) -> list[tuple[str, str, str, str, str, str]]:
    def order(cluster: Mapping[str, Any]) -> tuple[str, str, int, str]:
        name = str(cluster.get("name", ""))
        parsed = parse_cluster_name(name)
        if parsed is None:
            return name, "", 0, ""
        direction, port, subset, fqdn = parsed
        return fqdn, subset, port, direction

    rows = []
    for cluster in sorted(clusters, key=order):
        name = str(cluster.get("name", ""))
        parsed = parse_cluster_name(name)
        if parsed is None:
            fqdn, port, subset, direction = name, "-", "-", "-"
        else:
            direction, number, subset, fqdn = parsed
            port, subset = str(number), subset or "-"
        rows.append(
            (
                fqdn,
                port,
                subset,
                direction,
                _cluster_type(cluster),
                describe_config(cluster.get("metadata")),
            )
        )
    return rows


def _cluster_type(cluster: Mapping[str, Any]) -> str:
    if isinstance(cluster.get("cluster_type"), dict):
        return str(cluster["cluster_type"].get("name", ""))
    return str(cluster.get("type") or "STATIC")  # STATIC is the enum's zero value: left out


# --- endpoints ------------------------------------------------------------------------------


def format_endpoints(
    statuses: Mapping[str, Any],
    keep: Callable[[Mapping[str, Any], str], bool] | None = None,
) -> str:
    """ENDPOINT STATUS OUTLIER CHECK CLUSTER, from /clusters?format=json."""
    return format_table(ENDPOINT_HEADER, endpoint_rows(statuses, keep))


def endpoint_rows(
    statuses: Mapping[str, Any],
    keep: Callable[[Mapping[str, Any], str], bool] | None = None,
) -> list[tuple[str, str, str, str]]:
    found = []
    for cluster in statuses.get("cluster_statuses") or []:
        name = str(cluster.get("name", ""))
        for host in cluster.get("host_statuses") or []:
            if keep is None or keep(host, name):
                address, port = _host_address(host)
                outlier = (host.get("health_status") or {}).get("failed_outlier_check")
                found.append((address, port or 0, name, _health(host), bool(outlier)))
    found.sort(key=lambda e: (e[0], e[1], e[2]))
    return [
        (f"{address}:{port}" if port else address, health, "FAILED" if outlier else "OK", name)
        for address, port, name, health, outlier in found
    ]


def _host_address(host: Mapping[str, Any]) -> tuple[str, int | None]:
    return _socket_address(host.get("address"))


def _health(host: Mapping[str, Any]) -> str:
    # UNKNOWN is the enum's zero value, which Envoy's JSON leaves out.
    return str((host.get("health_status") or {}).get("eds_health_status") or "UNKNOWN")


# --- secrets --------------------------------------------------------------------------------


def format_secrets(certs: Mapping[str, Any], now: datetime | None = None) -> str:
    """RESOURCE NAME TYPE STATUS VALID CERT SERIAL NUMBER NOT AFTER NOT BEFORE IDENTITY, from
    Envoy's /certs; NO_SECRETS when the proxy has loaded none."""
    rows = secret_rows(certs, now)
    return format_table(SECRET_HEADER, rows) if rows else NO_SECRETS


def secret_rows(
    certs: Mapping[str, Any], now: datetime | None = None
) -> list[tuple[str, str, str, str, str, str, str, str]]:
    """One row per distinct certificate: the workload's (`default`) first, then the roots.

    /certs lists the certificates of each TLS context (every listener chain and cluster that
    uses TLS), so a sidecar's `default` certificate appears many times: it is shown once. While
    a rotation is under way a context may still hold the old one, and then both are shown.
    The resource names are Istio's, which the sandbox's SDS files use: a certificate chain is
    `default`, a CA certificate is `ROOTCA`.
    """
    now = datetime.now(UTC) if now is None else now
    rows: list[tuple[str, str, str, str, str, str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    kinds = (
        ("cert_chain", DEFAULT_SECRET, "Cert Chain"),
        ("ca_cert", ROOT_SECRET, "CA"),
    )
    for list_name, name, kind in kinds:
        for context in certs.get("certificates") or []:
            for cert in context.get(list_name) or []:
                serial = _serial(cert.get("serial_number"))
                if (name, serial) in seen:
                    continue
                seen.add((name, serial))
                not_before = str(cert.get("valid_from", ""))
                not_after = str(cert.get("expiration_time", ""))
                identities = [
                    str(san["uri"])
                    for san in cert.get("subject_alt_names") or []
                    if isinstance(san, dict) and "uri" in san
                ]
                rows.append(
                    (
                        name,
                        kind,
                        "ACTIVE",  # what /certs lists is in use by a TLS context
                        str(_valid_at(now, not_before, not_after)).lower(),
                        serial,
                        not_after,
                        not_before,
                        ",".join(identities),
                    )
                )
    return rows


def _serial(value: Any) -> str:
    """A serial number as istioctl prints it: hex without leading zeros (Envoy pads to bytes)."""
    try:
        return f"{int(str(value), 16):x}"
    except ValueError:
        return str(value or "")


def _valid_at(now: datetime, not_before: str, not_after: str) -> bool:
    try:
        return datetime.fromisoformat(not_before) <= now < datetime.fromisoformat(not_after)
    except ValueError:
        return False


# ============================================================================================
# Logs


def read_log(path: Path, tail: int = -1) -> list[str]:
    """The lines of a log file: all of them (tail < 0), or the last `tail`; none if it does not
    exist yet (nothing was written)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            if tail < 0:
                return log.read().splitlines()
            return [line.rstrip("\n") for line in deque(log, maxlen=tail)]
    except FileNotFoundError:
        return []
