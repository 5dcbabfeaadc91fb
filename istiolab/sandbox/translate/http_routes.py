"""A VirtualService's `http` rules as Envoy routes, for one proxy and one port.

This is istiod's BuildHTTPRoutesForVirtualService and TranslateRoute
(pilot/pkg/networking/core/route/route.go), used for sidecars and gateways alike:

- rules are translated in order, one Envoy route per `match` entry (Envoy takes the first route
  that matches); a rule without `match`, or a match that matches everything, ends the list;
- a match entry whose `port`, `sourceLabels`, `sourceNamespace` or `gateways` exclude the proxy
  being configured gives no route at all;
- route name: `http[].name`, plus "." and `match[].name` when set; `metadata.filter_metadata.istio
  .config` names the VirtualService (what `istioctl proxy-config routes` shows);
- destinations become Istio's cluster names, `outbound|<port>|<subset>|<fqdn>`, whether or not
  the service or subset exists (then Envoy answers 503, as with istiod);
- the decorator (span name) is `<host>:<port><path>` for one destination, else
  `<vs-name>:<port><path>`.

| VirtualService rule field     | Envoy Route                                                   |
|-------------------------------|---------------------------------------------------------------|
| route[] (one)                 | route.cluster                                                 |
| route[] (several)             | route.weighted_clusters (weight 0 dropped, no total_weight)   |
| route[].headers               | the route's header lists (one destination) or ClusterWeight's |
| rewrite.uri / uriRegexRewrite | route.prefix_rewrite / route.regex_rewrite                    |
| rewrite.authority             | route.host_rewrite_literal                                    |
| redirect                      | redirect (path/host/scheme/port, response_code)               |
| directResponse                | direct_response (status, body.inline_string/inline_bytes)     |
| headers.request/response      | request/response_headers_to_add (append_action) and _remove   |
| timeout, retries              | route.timeout, route.retry_policy                             |
| fault                         | typed_per_filter_config["envoy.filters.http.fault"]           |
| mirror(s), mirrorPercentage   | route.request_mirror_policies                                 |
| match[].statPrefix            | stat_prefix                                                   |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from . import names
from .hashing import hash_policy
from .hosts import name_of, namespace_of, resolve
from .matches import applies_to_proxy, is_catch_all, route_match
from .policies import (
    FAULT_FILTER,
    fault_config,
    mirror_fraction,
    mirror_policy,
    retry_policy,
    timeout_fields,
)

VIRTUAL_SERVICE_API = "/apis/networking.istio.io/v1"

OVERWRITE = "OVERWRITE_IF_EXISTS_OR_ADD"  # headers.*.set
APPEND = "APPEND_IF_EXISTS_OR_ADD"  # headers.*.add

REDIRECT_CODES = {
    0: "MOVED_PERMANENTLY",
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}

# Envoy's Route fields in the order a config dump shows them.
_ROUTE_FIELDS = (
    "name",
    "match",
    "route",
    "redirect",
    "direct_response",
    "metadata",
    "decorator",
    "typed_per_filter_config",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
    "stat_prefix",
)


def _no_hash(destination: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return None


@dataclass(frozen=True)
class RouteContext:
    """For whom and where routes are built: the proxy, the port, what it can see.

    `services` maps each service FQDN this route config knows to the ports it has there
    (a sidecar's port-P routes see a service only on port P, a gateway sees all its ports);
    it decides the port of a destination that does not name one. `hash_for` finds the
    DestinationRule consistent hash for a destination, if any.
    """

    listen_port: int
    gateway_names: Set[str]
    proxy_labels: Mapping[str, str]
    proxy_namespace: str
    services: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    hash_for: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] = _no_hash
    is_tls: bool = False


def config_path(virtual_service: Mapping[str, Any]) -> str:
    """/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"""
    return (
        f"{VIRTUAL_SERVICE_API}/namespaces/{namespace_of(virtual_service)}"
        f"/virtual-service/{name_of(virtual_service)}"
    )


def virtual_service_routes(
    virtual_service: Mapping[str, Any], context: RouteContext
) -> list[dict[str, Any]]:
    """The Envoy routes of a VirtualService for this proxy and port (may be empty)."""
    out: list[dict[str, Any]] = []
    for rule in (virtual_service.get("spec") or {}).get("http") or ():
        matches = rule.get("match") or []
        if not matches:
            route = translate_route(virtual_service, rule, None, context)
            if route is not None:
                out.append(route)
            break  # a rule without match takes everything: later rules are unreachable
        catch_all = False
        for match in matches:
            route = translate_route(virtual_service, rule, match, context)
            if route is not None:
                out.append(route)
                if is_catch_all(route):
                    catch_all = True
                    break
        if catch_all:
            break
    return out


def translate_route(
    virtual_service: Mapping[str, Any],
    rule: Mapping[str, Any],
    match: Mapping[str, Any] | None,
    context: RouteContext,
) -> dict[str, Any] | None:
    """One Envoy route for one match entry of one rule, or None if it is not for this proxy."""
    namespace = namespace_of(virtual_service)
    if match is not None and match.get("port") and int(match["port"]) != context.listen_port:
        return None
    if not applies_to_proxy(
        match, context.proxy_labels, context.gateway_names, context.proxy_namespace, namespace
    ):
        return None

    out: dict[str, Any] = {}
    name = str(rule.get("name") or "")
    if match is not None and match.get("name"):
        name = f"{name}.{match['name']}"
    if name:
        out["name"] = name
    out["match"] = route_match(match)
    out["metadata"] = {"filter_metadata": {"istio": {"config": config_path(virtual_service)}}}
    if match is not None and match.get("statPrefix"):
        out["stat_prefix"] = str(match["statPrefix"])

    operations = HeaderOperations.of(rule.get("headers"))
    operations.apply_to(out)

    if rule.get("redirect") is not None:
        redirect = redirect_action(rule["redirect"], context.listen_port, context.is_tls)
        if redirect is None:
            # A code Envoy cannot send: istiod emits the route with no action, which Envoy
            # refuses along with the whole route config; leaving the route out keeps the rest.
            return None
        out["redirect"] = redirect
    elif rule.get("directResponse") is not None:
        out["direct_response"] = direct_response_action(rule["directResponse"])
    else:
        action = route_action(virtual_service, rule, out, operations.authority, context)
        if action is None:
            return None
        out["route"] = action

    out["decorator"] = {"operation": operation(out, name_of(virtual_service), context.listen_port)}
    fault = fault_config(rule.get("fault"))
    if fault is not None:
        out["typed_per_filter_config"] = {FAULT_FILTER: fault}
    return {key: out[key] for key in _ROUTE_FIELDS if key in out}


def destination_cluster(
    destination: Mapping[str, Any], namespace: str, context: RouteContext
) -> str:
    """GetDestinationCluster: outbound|<port>|<subset>|<fqdn>.

    The port is the destination's `port.number`, else the service's only port, else the port
    the routes are built for.
    """
    host = resolve(str(destination.get("host", "")), namespace)
    port = (destination.get("port") or {}).get("number")
    if port is None:
        ports = context.services.get(host, ())
        port = ports[0] if len(ports) == 1 else context.listen_port
    return names.outbound_cluster(int(port), host, str(destination.get("subset") or ""))


def route_action(
    virtual_service: Mapping[str, Any],
    rule: Mapping[str, Any],
    route: dict[str, Any],
    authority: str,
    context: RouteContext,
) -> dict[str, Any] | None:
    """The RouteAction for a rule that forwards (applyHTTPRouteDestination)."""
    namespace = namespace_of(virtual_service)
    destinations = list(rule.get("route") or ())
    if not destinations:
        return None
    action: dict[str, Any] = {}

    rewrite = rule.get("rewrite") or {}
    regex_rewrite = rewrite.get("uriRegexRewrite")
    if regex_rewrite:
        action["regex_rewrite"] = {
            "pattern": {"regex": str(regex_rewrite.get("match", ""))},
            "substitution": str(regex_rewrite.get("rewrite", "")),
        }
    elif rewrite.get("uri"):
        action["prefix_rewrite"] = str(rewrite["uri"])
    if rewrite.get("authority"):
        authority = str(rewrite["authority"])
    if authority:
        action["host_rewrite_literal"] = authority

    mirrors: list[dict[str, Any]] = []
    if rule.get("mirror"):
        fraction = mirror_fraction(rule.get("mirrorPercentage"), rule.get("mirrorPercent"))
        if fraction is not None:
            cluster = destination_cluster(rule["mirror"], namespace, context)
            mirrors.append(mirror_policy(cluster, fraction))
    for mirror in rule.get("mirrors") or ():
        fraction = mirror_fraction(mirror.get("percentage"))
        if fraction is not None and mirror.get("destination"):
            cluster = destination_cluster(mirror["destination"], namespace, context)
            mirrors.append(mirror_policy(cluster, fraction))

    hashes: list[dict[str, Any]] = []
    consistent = False
    if len(destinations) == 1:
        destination = destinations[0]
        target = destination.get("destination") or {}
        action["cluster"] = destination_cluster(target, namespace, context)
        extra = HeaderOperations.of(destination.get("headers"))
        extra.apply_to(route)
        if extra.authority and "host_rewrite_literal" not in action:
            action["host_rewrite_literal"] = extra.authority
        settings = context.hash_for(target)
        consistent = settings is not None
        if (policy := hash_policy(settings)) is not None:
            hashes.append(policy)
    else:
        weighted = [d for d in destinations if int(d.get("weight") or 0) > 0]
        if not weighted:
            # Envoy refuses a split whose weights add up to 0 (the API server would have
            # refused the VirtualService first): split evenly instead of losing the config.
            weighted = [{**d, "weight": 1} for d in destinations]
        clusters = []
        for destination in weighted:
            target = destination.get("destination") or {}
            cluster: dict[str, Any] = {
                "name": destination_cluster(target, namespace, context),
                "weight": int(destination["weight"]),
            }
            HeaderOperations.of(destination.get("headers")).apply_to(cluster, on_cluster=True)
            clusters.append(cluster)
            if policy := hash_policy(context.hash_for(target)):
                hashes.append(policy)
        action["weighted_clusters"] = {"clusters": clusters}

    timeouts = timeout_fields(rule.get("timeout"))
    action["timeout"] = timeouts["timeout"]
    policy = retry_policy(rule.get("retries"), consistent_hash=consistent)
    if policy is not None:
        action["retry_policy"] = policy
    if mirrors:
        action["request_mirror_policies"] = mirrors
    if hashes:
        action["hash_policy"] = hashes
    return _ordered_action(action)


_ACTION_FIELDS = (
    "cluster",
    "weighted_clusters",
    "prefix_rewrite",
    "regex_rewrite",
    "host_rewrite_literal",
    "timeout",
    "retry_policy",
    "request_mirror_policies",
    "hash_policy",
    "max_stream_duration",
)


def _ordered_action(action: dict[str, Any]) -> dict[str, Any]:
    return {key: action[key] for key in _ACTION_FIELDS if key in action}


def redirect_action(
    redirect: Mapping[str, Any], listen_port: int, is_tls: bool = False
) -> dict[str, Any] | None:
    """ApplyRedirect. `derivePort: FROM_REQUEST_PORT` is the port the routes are built for."""
    code = int(redirect.get("redirectCode") or 0)
    if code not in REDIRECT_CODES:
        return None
    out: dict[str, Any] = {}
    if redirect.get("authority"):
        out["host_redirect"] = str(redirect["authority"])
    if redirect.get("uri"):
        out["path_redirect"] = str(redirect["uri"])
    scheme = str(redirect.get("scheme") or "")
    if scheme:
        out["scheme_redirect"] = scheme
    port = 0
    if "port" in redirect:
        port = int(redirect["port"])
    elif redirect.get("derivePort") == "FROM_REQUEST_PORT":
        port = listen_port
    if "port" in redirect or "derivePort" in redirect:
        effective_scheme = scheme or ("https" if is_tls else "http")
        # No explicit :80 for http or :443 for https.
        if (port, effective_scheme) in ((80, "http"), (443, "https")):
            port = 0
    if port:
        out["port_redirect"] = port
    out["response_code"] = REDIRECT_CODES[code]
    return out


def direct_response_action(direct: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"status": int(direct.get("status") or 0)}
    body = direct.get("body") or {}
    if "string" in body:
        out["body"] = {"inline_string": str(body["string"])}
    elif "bytes" in body:
        out["body"] = {"inline_bytes": str(body["bytes"])}  # base64, in YAML as in Envoy JSON
    return out


def operation(route: Mapping[str, Any], vs_name: str, port: int) -> str:
    """GetRouteOperation: `<host>:<port><path>` for one cluster, else `<vs>:<port><path>`."""
    match = route["match"]
    if "prefix" in match:
        path = f"{match['prefix']}*"
    elif "path" in match:
        path = match["path"]
    elif "safe_regex" in match:
        path = match["safe_regex"]["regex"]
    else:
        path = "/*"
    cluster = (route.get("route") or {}).get("cluster", "")
    parts = cluster.split("|")
    if len(parts) == 4:
        return f"{parts[3]}:{int(parts[1]) if parts[1].isdigit() else 0}{path}"
    return f"{vs_name}:{port}{path}"


def _is_internal_header(name: str) -> bool:
    """Headers Envoy will not let a route set: pseudo-headers and Host."""
    return name.startswith(":") or name.lower() == "host"


def _is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def _header_options(headers: Mapping[str, Any] | None, append_action: str) -> tuple[list, str]:
    """(HeaderValueOptions sorted by name, the authority set among them or "")."""
    options = []
    authority = ""
    for key, value in (headers or {}).items():
        if _is_authority_header(key):
            authority = str(value)
        if _is_internal_header(key):
            continue
        header = {"key": key, "value": str(value)}
        options.append({"header": header, "append_action": append_action})
    options.sort(key=lambda option: option["header"]["key"])
    return options, authority


@dataclass
class HeaderOperations:
    """A VirtualService `headers` block (TranslateHeadersOperations).

    `set` overwrites (OVERWRITE_IF_EXISTS_OR_ADD), `add` appends (APPEND_IF_EXISTS_OR_ADD),
    `remove` removes; pseudo-headers and Host are dropped, except that setting `:authority` or
    `host` on the request becomes `authority` (a host rewrite).
    """

    request_add: list[dict[str, Any]]
    request_remove: list[str]
    response_add: list[dict[str, Any]]
    response_remove: list[str]
    authority: str

    @classmethod
    def of(cls, headers: Mapping[str, Any] | None) -> HeaderOperations:
        request = (headers or {}).get("request") or {}
        response = (headers or {}).get("response") or {}
        request_set, set_authority = _header_options(request.get("set"), OVERWRITE)
        request_add, add_authority = _header_options(request.get("add"), APPEND)
        response_set, _ = _header_options(response.get("set"), OVERWRITE)
        response_add, _ = _header_options(response.get("add"), APPEND)
        return cls(
            request_add=request_set + request_add,
            request_remove=[h for h in request.get("remove") or () if not _is_internal_header(h)],
            response_add=response_set + response_add,
            response_remove=[h for h in response.get("remove") or () if not _is_internal_header(h)],
            authority=set_authority or add_authority,
        )

    def apply_to(self, target: dict[str, Any], *, on_cluster: bool = False) -> None:
        """Append to a Route's header lists, or set them on a ClusterWeight (`on_cluster`)."""
        for key, values in (
            ("request_headers_to_add", self.request_add),
            ("request_headers_to_remove", self.request_remove),
            ("response_headers_to_add", self.response_add),
            ("response_headers_to_remove", self.response_remove),
        ):
            if values:
                target.setdefault(key, []).extend(values)
        if on_cluster and self.authority:
            target["host_rewrite_literal"] = self.authority
