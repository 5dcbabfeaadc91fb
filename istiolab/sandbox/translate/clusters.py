"""Services and DestinationRules to Envoy clusters (CDS), as istiod builds them.

Each proxy gets, for every port of every Service, the cluster `outbound|<port>||<fqdn>`, and one
more per subset of the Service's DestinationRule, `outbound|<port>|<subset>|<fqdn>`, holding only
the pods whose labels include the subset's. A sidecar also gets `inbound|<port>||`, the cluster in
front of its own app. istiod sends endpoints separately (EDS); the sandbox writes them into each
cluster (STATIC, `load_assignment`): every pod is 127.0.0.1 and the port a caller should use
(`Pod.endpoint_port`: its sidecar's inbound listener, else the app itself).

Istio's defaults are written out, as istiod does, because Envoy's own defaults differ:
`connect_timeout` 10s (meshConfig.connectTimeout), `lb_policy` LEAST_REQUEST, and circuit
breakers at 2^32-1 (Envoy's defaults, 1024 connections and 3 retries, would otherwise apply).

A DestinationRule's trafficPolicy changes that (see each `_apply_*`):
- loadBalancer: simple (ROUND_ROBIN, RANDOM, LEAST_REQUEST/LEAST_CONN) and consistentHash
  (RING_HASH or MAGLEV here; the hash key itself is a route's `hash_policy`, built with the
  routes from `traffic_policy_for`), warmup as a slow-start window;
- connectionPool: the circuit breaker thresholds, connect timeout, TCP keepalive, and the HTTP
  protocol options (`typed_extension_protocol_options`; the Cluster's own
  `common_http_protocol_options` and friends are deprecated in Envoy 1.40);
- outlierDetection, with the panic threshold at minHealthPercent (0 unless set) whenever it is on.
Only values above zero override a default, as in istiod (which cannot tell 0 from unset).

Which policy applies (istiod's GetPortLevelTrafficPolicy and MergeSubsetTrafficPolicy): a
`portLevelSettings` entry for the port replaces the top-level policy entirely (no field is
inherited); a subset's policy then replaces the result block by block (connectionPool,
outlierDetection, loadBalancer, tls), and a subset's own port-level entry replaces all four.

- tls: the cluster's transport socket (mtls.py): auto-mTLS when the rule sets no `tls`, with each
  endpoint that has a sidecar and accepts mTLS labelled `tlsMode: istio` in its metadata.
Not translated: `loadBalancer.simple: PASSTHROUGH` (an original-destination cluster means
nothing behind an HTTP proxy on loopback; it gets the default), localityLbSetting (one locality
here), `warmup.aggression`/`minimumPercent`, proxyProtocol and tunnel.

Without a sidecar, a workload reaches Services through `kube_proxy_clusters`: one cluster per
Service port, RANDOM across its pods like kube-proxy's iptables rules, with no outlier detection
and no DestinationRule (a workload outside the mesh never sees Istio's configuration).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..model import CLUSTER_DOMAIN, Gateway, Mesh, Pod, Service, ServicePort
from . import mtls, names, peer_authentication, protocol
from .durations import NANOS_PER_SECOND, envoy_duration, nanoseconds
from .hosts import is_wildcard, name_of, namespace_of, resolve, subset_of, visible

MAX_UINT32 = 4294967295
MESH_CONNECT_TIMEOUT = "10s"  # meshConfig.connectTimeout
ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace: its DestinationRules apply mesh-wide
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP_PROTOCOL_OPTIONS_TYPE = f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"
_DEFAULT_RING_SIZE = 1024  # Envoy's, which istiod writes explicitly

Proxy = Pod | Gateway

_POLICY_BLOCKS = ("connectionPool", "outlierDetection", "loadBalancer", "tls")
_CLUSTER_KEY_ORDER = (
    "name",
    "type",
    "connect_timeout",
    "lb_policy",
    "least_request_lb_config",
    "round_robin_lb_config",
    "ring_hash_lb_config",
    "maglev_lb_config",
    "circuit_breakers",
    "outlier_detection",
    "common_lb_config",
    "upstream_connection_options",
    "typed_extension_protocol_options",
    "metadata",
    "transport_socket",
    "transport_socket_matches",
    "load_assignment",
)


# --- which DestinationRule, which policy -----------------------------------------------------


@dataclass(frozen=True)
class ResolvedRule:
    """The DestinationRule a proxy uses for one host: several for the same host in the same
    namespace are merged, as istiod merges them (subsets added, the first trafficPolicy kept)."""

    name: str
    namespace: str
    spec: Mapping[str, Any]

    @property
    def config_path(self) -> str:
        """How istiod names the rule in cluster metadata (and `proxy-config` shows it)."""
        return (
            f"/apis/networking.istio.io/v1/namespaces/{self.namespace}/destination-rule/{self.name}"
        )

    def subsets(self) -> list[Mapping[str, Any]]:
        return list(self.spec.get("subsets") or ())


def destination_rule_for(
    mesh: Mesh, host: str, namespace: str, labels: Mapping[str, str]
) -> ResolvedRule | None:
    """The DestinationRule that a proxy in `namespace` with `labels` uses for `host` (an FQDN).

    As istiod looks it up: a rule in the proxy's own namespace first, then one in the host's
    namespace, then one in the root namespace (istio-system), then any other; a rule counts only
    where its exportTo makes it visible, and one with a workloadSelector only for the workloads
    it selects in its namespace. Within a namespace, an exact host beats a wildcard, and a longer
    wildcard a shorter one.
    """
    candidates: dict[str, list[tuple[tuple[int, int], bool, Mapping[str, Any]]]] = {}
    for rule in _oldest_first(mesh.istio.get("DestinationRule", ())):
        spec = rule.get("spec") or {}
        rule_namespace = namespace_of(rule)
        if not visible(rule, namespace):
            continue
        selector = (spec.get("workloadSelector") or {}).get("matchLabels")
        if selector is not None and (rule_namespace != namespace or not _selects(selector, labels)):
            continue
        specificity = _host_specificity(resolve(str(spec.get("host", "")), rule_namespace), host)
        if specificity is not None:
            candidates.setdefault(rule_namespace, []).append((specificity, bool(selector), rule))
    order = [namespace, _host_namespace(host), ROOT_NAMESPACE, *sorted(candidates)]
    for rule_namespace in dict.fromkeys(order):
        found = candidates.get(rule_namespace)
        if found:
            best = max(specificity for specificity, _, _ in found)
            # The oldest first, and rules with a selector before the namespace-wide ones.
            ranked = sorted(found, key=lambda candidate: not candidate[1])
            return _merge_rules([rule for specificity, _, rule in ranked if specificity == best])
    return None


def port_traffic_policy(policy: Mapping[str, Any] | None, port: int) -> dict[str, Any] | None:
    """A trafficPolicy as it applies to one Service port: a matching portLevelSettings entry
    replaces the four blocks entirely (unset ones fall back to Istio's defaults, not to the
    top-level policy)."""
    if policy is None:
        return None
    for entry in policy.get("portLevelSettings") or ():
        if (entry.get("port") or {}).get("number") == port:
            return {block: entry[block] for block in _POLICY_BLOCKS if entry.get(block) is not None}
    return {key: value for key, value in policy.items() if key != "portLevelSettings"}


def subset_traffic_policy(
    policy: Mapping[str, Any] | None, subset_policy: Mapping[str, Any] | None, port: int
) -> dict[str, Any] | None:
    """The policy of one subset on one port: the rule's (port-level applied), with each block the
    subset sets replacing the rule's; a subset port-level entry for this port replaces all four."""
    merged = port_traffic_policy(policy, port)
    if subset_policy is None:
        return merged
    has_port_level = any(
        (entry.get("port") or {}).get("number") == port
        for entry in subset_policy.get("portLevelSettings") or ()
    )
    subset = port_traffic_policy(subset_policy, port) or {}
    if merged is None:
        return subset
    for block in _POLICY_BLOCKS:
        if subset.get(block) is not None or has_port_level:
            if subset.get(block) is None:
                merged.pop(block, None)
            else:
                merged[block] = subset[block]
    for extra in ("tunnel", "proxyProtocol"):
        if subset.get(extra) is not None:
            merged[extra] = subset[extra]
    return merged


def traffic_policy_for(
    rule: ResolvedRule | None, port: int, subset: str = ""
) -> dict[str, Any] | None:
    """The trafficPolicy that shapes the cluster for `port` (and `subset`) under `rule`."""
    if rule is None:
        return None
    policy = rule.spec.get("trafficPolicy")
    if not subset:
        return port_traffic_policy(policy, port)
    for candidate in rule.subsets():
        if candidate.get("name") == subset:
            return subset_traffic_policy(policy, candidate.get("trafficPolicy"), port)
    return port_traffic_policy(policy, port)


# --- the clusters ------------------------------------------------------------------------------


def outbound_clusters(
    mesh: Mesh, proxy: Proxy, *, sds_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Every outbound cluster of a sidecar or the gateway: per Service port the default cluster,
    then one per subset of the DestinationRule this proxy uses for that Service.

    `sds_dir` holds the proxy's certificate (envoy/sds_files.py); without one the proxy cannot
    take part in mTLS and every cluster is plaintext.
    """
    namespace, labels = _identity(proxy)
    clusters = []
    for service in mesh.services:
        rule = destination_rule_for(mesh, service.fqdn, namespace, labels)
        pods = mesh.pods_of(service)
        for port in service.ports:
            policy = traffic_policy_for(rule, port.port)
            clusters.append(_outbound_cluster(mesh, service, port, "", pods, policy, rule, sds_dir))
            for subset in rule.subsets() if rule else ():
                members = [pod for pod in pods if _selects(subset.get("labels") or {}, pod.labels)]
                policy = traffic_policy_for(rule, port.port, subset["name"])
                clusters.append(
                    _outbound_cluster(
                        mesh, service, port, subset["name"], members, policy, rule, sds_dir
                    )
                )
    return clusters


def services_of(mesh: Mesh, pod: Pod) -> list[Service]:
    """The Services whose selector picks this pod."""
    return [service for service in mesh.services if pod in mesh.pods_of(service)]


def inbound_port(pod: Pod, mesh: Mesh | None = None) -> int:
    """The port in the pod's inbound cluster name: its Service's target port (9080 for Bookinfo),
    as in Kubernetes, even though the app itself listens on `pod.app_port` in the sandbox."""
    if mesh is not None:
        for service in services_of(mesh, pod):
            for port in service.ports:
                return _target_port(port, pod)
    if len(pod.container_ports) == 1:
        return next(iter(pod.container_ports.values()))
    return pod.app_port


def inbound_cluster(pod: Pod, mesh: Mesh | None = None) -> dict[str, Any]:
    """`inbound|<port>||`: the sidecar's cluster in front of its app, 127.0.0.1:<app_port>.

    With `mesh`, the connectionPool of the DestinationRule for the pod's Service applies here too
    (istiod sets circuit breakers on the server side as well); no other part of it does.
    """
    port = inbound_port(pod, mesh)
    name = names.inbound_cluster(port)
    cluster = _static_cluster(name, [(pod.address, pod.app_port, "", False)])
    policy: Mapping[str, Any] | None = None
    if mesh is not None:
        for service in services_of(mesh, pod):
            rule = destination_rule_for(mesh, service.fqdn, pod.namespace, pod.labels)
            cluster["metadata"] = _istio_metadata(service, "", None)
            if rule is not None and rule.spec.get("trafficPolicy") is not None:
                service_port = service.ports[0].port if service.ports else port
                policy = port_traffic_policy(rule.spec["trafficPolicy"], service_port)
                cluster["metadata"]["filter_metadata"]["istio"]["config"] = rule.config_path
            break
    _apply_connection_pool(cluster, (policy or {}).get("connectionPool"), http2=False)
    return _ordered(cluster)


def kube_proxy_cluster_name(service: Service, port: int) -> str:
    """kube-proxy|9080||reviews.default.svc.cluster.local (shaped like Istio's names)."""
    return f"kube-proxy|{port}||{service.fqdn}"


def kube_proxy_clusters(mesh: Mesh) -> list[dict[str, Any]]:
    """What kube-proxy does for callers without a sidecar: per Service port, all its pods, picked
    at random (iptables mode), with no retries, no outlier detection and no connection limits."""
    clusters = []
    for service in mesh.services:
        pods = mesh.pods_of(service)
        for port in service.ports:
            name = kube_proxy_cluster_name(service, port.port)
            cluster = _static_cluster(name, _endpoints(pods))
            cluster["lb_policy"] = "RANDOM"
            cluster["circuit_breakers"] = {"thresholds": [_default_thresholds()]}
            clusters.append(_ordered(cluster))
    return clusters


def _outbound_cluster(
    mesh: Mesh,
    service: Service,
    port: ServicePort,
    subset: str,
    pods: Iterable[Pod],
    policy: Mapping[str, Any] | None,
    rule: ResolvedRule | None,
    sds_dir: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    name = names.outbound_cluster(port.port, service.fqdn, subset)
    pods = list(pods)
    cluster = _static_cluster(name, _endpoints(pods, mtls_port=port, mesh=mesh))
    policy = policy or {}
    http2 = _upgrades_to_http2(port, policy.get("connectionPool"))
    _apply_connection_pool(cluster, policy.get("connectionPool"), http2=http2)
    _apply_outlier_detection(cluster, policy.get("outlierDetection"))
    _apply_load_balancer(cluster, policy.get("loadBalancer"))
    mtls.apply_upstream_tls(
        cluster,
        policy.get("tls"),
        sni=mtls.sni(port.port, service.fqdn, subset),
        # The identities of all the Service's workloads, whichever subset (istiod does the same).
        peer_identities=[pod.spiffe_id for pod in mesh.pods_of(service) if pod.sidecar],
        sds_dir=sds_dir,
        http2=http2,
    )
    cluster["metadata"] = _istio_metadata(service, subset, rule)
    return _ordered(cluster)


Endpoint = tuple[str, int, str, bool]  # address, port, pod name, accepts Istio mTLS


def _static_cluster(name: str, endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    lb_endpoints = []
    for address, port, hostname, accepts_mtls in endpoints:
        endpoint: dict[str, Any] = {
            "address": {"socket_address": {"address": address, "port_value": port}}
        }
        if hostname:
            endpoint["hostname"] = hostname  # the pod: /clusters shows it beside 127.0.0.1:port
        lb_endpoint: dict[str, Any] = {"endpoint": endpoint, "load_balancing_weight": 1}
        if accepts_mtls:
            lb_endpoint["metadata"] = {"filter_metadata": dict(mtls.TLS_MODE_METADATA)}
        lb_endpoints.append(lb_endpoint)
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": MESH_CONNECT_TIMEOUT,
        "common_lb_config": {},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else [],
        },
    }


def _endpoints(
    pods: Iterable[Pod], *, mtls_port: ServicePort | None = None, mesh: Mesh | None = None
) -> list[Endpoint]:
    """Each pod as an endpoint. With `mtls_port` (and `mesh`), a pod is marked as accepting
    Istio mTLS when it has a sidecar and its PeerAuthentication for the port is not DISABLE
    (istiod's mtlsChecker): auto-mTLS then sends it TLS."""
    endpoints = []
    for pod in pods:
        accepts_mtls = False
        if mtls_port is not None and mesh is not None and pod.sidecar is not None:
            mode = peer_authentication.mtls_mode(
                mesh.istio.get("PeerAuthentication", ()),
                pod.namespace,
                pod.labels,
                _target_port(mtls_port, pod),
            )
            accepts_mtls = mode != mtls.DISABLE
        endpoints.append((pod.address, pod.endpoint_port, pod.name, accepts_mtls))
    return endpoints


def _default_thresholds() -> dict[str, int]:
    return {
        "max_connections": MAX_UINT32,
        "max_pending_requests": MAX_UINT32,
        "max_requests": MAX_UINT32,
        "max_retries": MAX_UINT32,
    }


def _apply_connection_pool(
    cluster: dict[str, Any], pool: Mapping[str, Any] | None, *, http2: bool
) -> None:
    """connectionPool -> circuit breakers, connect timeout, keepalive, HTTP protocol options.
    Applied to every cluster: with no pool, it writes Istio's defaults."""
    pool = pool or {}
    tcp = pool.get("tcp") or {}
    http = pool.get("http") or {}
    thresholds = _default_thresholds()
    for field, threshold in (
        (tcp.get("maxConnections"), "max_connections"),
        (http.get("http1MaxPendingRequests"), "max_pending_requests"),
        (http.get("http2MaxRequests"), "max_requests"),
        (http.get("maxRetries"), "max_retries"),
    ):
        if _positive(field):
            thresholds[threshold] = int(field)
    cluster["circuit_breakers"] = {"thresholds": [thresholds]}
    if tcp.get("connectTimeout"):
        cluster["connect_timeout"] = envoy_duration(tcp["connectTimeout"])
    keepalive = tcp.get("tcpKeepalive")
    if keepalive is not None:
        settings: dict[str, int] = {}
        if _positive(keepalive.get("probes")):
            settings["keepalive_probes"] = int(keepalive["probes"])
        for istio_field, envoy_field in (
            ("time", "keepalive_time"),
            ("interval", "keepalive_interval"),
        ):
            if keepalive.get(istio_field):
                settings[envoy_field] = nanoseconds(keepalive[istio_field]) // NANOS_PER_SECOND
        cluster["upstream_connection_options"] = {"tcp_keepalive": settings}

    common: dict[str, Any] = {}
    idle_timeout = http.get("idleTimeout") or tcp.get("idleTimeout")
    if idle_timeout:
        common["idle_timeout"] = envoy_duration(idle_timeout)
    if _positive(http.get("maxRequestsPerConnection")):
        common["max_requests_per_connection"] = int(http["maxRequestsPerConnection"])
    if tcp.get("maxConnectionDuration"):
        common["max_connection_duration"] = envoy_duration(tcp["maxConnectionDuration"])
    use_client_protocol = bool(http.get("useClientProtocol"))
    if not (common or http2 or use_client_protocol):
        return
    options: dict[str, Any] = {"@type": _HTTP_PROTOCOL_OPTIONS_TYPE}
    if common:
        options["common_http_protocol_options"] = common
    http2_options: dict[str, Any] = {}
    if http2 and _positive(http.get("maxConcurrentStreams")):
        http2_options["max_concurrent_streams"] = int(http["maxConcurrentStreams"])
    if use_client_protocol:
        options["use_downstream_protocol_config"] = {
            "http_protocol_options": {},
            "http2_protocol_options": http2_options,
        }
    elif http2:
        options["explicit_http_config"] = {"http2_protocol_options": http2_options}
    else:
        options["explicit_http_config"] = {"http_protocol_options": {}}
    cluster["typed_extension_protocol_options"] = {HTTP_PROTOCOL_OPTIONS: options}


def _apply_outlier_detection(cluster: dict[str, Any], outlier: Mapping[str, Any] | None) -> None:
    """outlierDetection -> outlier_detection (consecutive errors only: success-rate ejection stays
    off) and the panic threshold. Without the block, the cluster has no outlier detection."""
    if outlier is None:
        return
    detection: dict[str, Any] = {}
    for istio_field, envoy_field in (
        ("consecutive5xxErrors", "consecutive_5xx"),
        ("consecutiveGatewayErrors", "consecutive_gateway_failure"),
    ):
        if outlier.get(istio_field) is not None:
            count = int(outlier[istio_field])
            detection[envoy_field] = count
            detection[f"enforcing_{envoy_field}"] = 100 if count > 0 else 0
    if outlier.get("interval"):
        detection["interval"] = envoy_duration(outlier["interval"])
    if outlier.get("baseEjectionTime"):
        detection["base_ejection_time"] = envoy_duration(outlier["baseEjectionTime"])
    if _positive(outlier.get("maxEjectionPercent")):
        detection["max_ejection_percent"] = int(outlier["maxEjectionPercent"])
    if outlier.get("splitExternalLocalOriginErrors"):
        detection["split_external_local_origin_errors"] = True
        if _positive(outlier.get("consecutiveLocalOriginFailures")):
            detection["consecutive_local_origin_failure"] = int(
                outlier["consecutiveLocalOriginFailures"]
            )
            detection["enforcing_consecutive_local_origin_failure"] = 100
        detection["enforcing_local_origin_success_rate"] = 0
    detection["enforcing_success_rate"] = 0
    cluster["outlier_detection"] = detection
    # Envoy stops honouring ejections when fewer than 50% of hosts are healthy ("panic"); with a
    # few pods per Service that would undo outlier detection, so Istio defaults this to 0.
    min_health = outlier.get("minHealthPercent") or 0
    cluster["common_lb_config"]["healthy_panic_threshold"] = {"value": max(int(min_health), 0)}


def _apply_load_balancer(cluster: dict[str, Any], balancer: Mapping[str, Any] | None) -> None:
    balancer = balancer or {}
    simple = balancer.get("simple") or "UNSPECIFIED"
    if simple == "RANDOM":
        cluster["lb_policy"] = "RANDOM"
    elif simple == "ROUND_ROBIN":
        cluster["lb_policy"] = "ROUND_ROBIN"
        _apply_warmup(cluster, "round_robin_lb_config", balancer)
    else:  # UNSPECIFIED, LEAST_REQUEST, LEAST_CONN (its deprecated alias), PASSTHROUGH (see top)
        cluster["lb_policy"] = "LEAST_REQUEST"
        _apply_warmup(cluster, "least_request_lb_config", balancer)

    consistent_hash = balancer.get("consistentHash")
    if consistent_hash is None:
        return
    cluster.pop("least_request_lb_config", None)
    cluster.pop("round_robin_lb_config", None)
    if consistent_hash.get("maglev") is not None:
        cluster["lb_policy"] = "MAGLEV"
        table_size = consistent_hash["maglev"].get("tableSize")
        if _positive(table_size):
            cluster["maglev_lb_config"] = {"table_size": int(table_size)}
    elif consistent_hash.get("ringHash") is not None:
        cluster["lb_policy"] = "RING_HASH"
        ring_size = consistent_hash["ringHash"].get("minimumRingSize")
        if _positive(ring_size):
            cluster["ring_hash_lb_config"] = {"minimum_ring_size": int(ring_size)}
    else:
        cluster["lb_policy"] = "RING_HASH"
        ring_size = consistent_hash.get("minimumRingSize")  # deprecated spelling of ringHash's
        size = int(ring_size) if _positive(ring_size) else _DEFAULT_RING_SIZE
        cluster["ring_hash_lb_config"] = {"minimum_ring_size": size}


def _apply_warmup(cluster: dict[str, Any], config_field: str, balancer: Mapping[str, Any]) -> None:
    window = (balancer.get("warmup") or {}).get("duration") or balancer.get("warmupDurationSecs")
    if window:
        cluster[config_field] = {"slow_start_config": {"slow_start_window": envoy_duration(window)}}


def _upgrades_to_http2(port: ServicePort, pool: Mapping[str, Any] | None) -> bool:
    """HTTP/2 to the upstream: for HTTP2/gRPC ports, or when h2UpgradePolicy asks for it."""
    policy = ((pool or {}).get("http") or {}).get("h2UpgradePolicy")
    if policy == "UPGRADE":
        return True
    if policy == "DO_NOT_UPGRADE":
        return False
    return protocol.port_protocol(port) in {protocol.HTTP2, protocol.GRPC, protocol.GRPC_WEB}


def _istio_metadata(service: Service, subset: str, rule: ResolvedRule | None) -> dict[str, Any]:
    istio: dict[str, Any] = {
        "services": [{"host": service.fqdn, "name": service.name, "namespace": service.namespace}]
    }
    if rule is not None:
        istio["config"] = rule.config_path
    if subset:
        istio["subset"] = subset
    return {"filter_metadata": {"istio": istio}}


def _ordered(cluster: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: cluster[key] for key in _CLUSTER_KEY_ORDER if key in cluster}
    ordered.update({key: value for key, value in cluster.items() if key not in ordered})
    return ordered


def _identity(proxy: Proxy) -> tuple[str, Mapping[str, str]]:
    return proxy.namespace, proxy.labels


def _target_port(port: ServicePort, pod: Pod) -> int:
    if port.target_port is None:
        return port.port
    if isinstance(port.target_port, int):
        return port.target_port
    return pod.container_ports.get(port.target_port, port.port)


def _positive(value: Any) -> bool:
    try:
        return value is not None and int(value) > 0
    except (TypeError, ValueError):
        return False


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _host_specificity(rule_host: str, host: str) -> tuple[int, int] | None:
    """How closely a rule's host matches `host`: exact beats any wildcard, a longer wildcard
    (`*.default.svc.cluster.local`) beats a shorter one (`*`)."""
    if rule_host == host:
        return (2, 0)
    if is_wildcard(rule_host) and subset_of(host, rule_host):
        return (1, len(rule_host))
    return None


def _oldest_first(rules: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """istiod's order: by creation time; rules without one keep the order they were applied in."""
    listed = list(rules)
    if listed and all((rule.get("metadata") or {}).get("creationTimestamp") for rule in listed):
        return sorted(listed, key=lambda rule: str(rule["metadata"]["creationTimestamp"]))
    return listed


def _host_namespace(host: str) -> str:
    suffix = f".svc.{CLUSTER_DOMAIN}"
    parts = host.removesuffix(suffix).split(".") if host.endswith(suffix) else []
    return parts[1] if len(parts) == 2 else ""


def _merge_rules(rules: list[Mapping[str, Any]]) -> ResolvedRule:
    first = rules[0]
    spec = dict(first.get("spec") or {})
    subsets = list(spec.get("subsets") or ())
    for other in rules[1:]:
        other_spec = other.get("spec") or {}
        if spec.get("trafficPolicy") is None and other_spec.get("trafficPolicy") is not None:
            spec["trafficPolicy"] = other_spec["trafficPolicy"]
        known = {subset.get("name") for subset in subsets}
        subsets += [s for s in other_spec.get("subsets") or () if s.get("name") not in known]
    if subsets:
        spec["subsets"] = subsets
    return ResolvedRule(name=name_of(first), namespace=namespace_of(first), spec=spec)
