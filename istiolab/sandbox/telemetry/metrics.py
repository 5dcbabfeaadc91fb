"""Istio's standard request metrics, counted from the proxies' JSON access logs.

istio-proxy's `istio.stats` filter counts every request a proxy handles, in
`istio_requests_total`, and records its duration and sizes in histograms, each labelled with who
called whom. The names, the labels and the values used when something is not known are Istio's
(https://istio.io/latest/docs/reference/config/metrics/, and istio/proxy's
source/extensions/filters/http/istio_stats/istio_stats.cc, which sets them):

- reporter: "source" (the client's sidecar or the gateway) or "destination" (the server's
  sidecar). Each request through two sidecars is counted twice, once by each.
- source_* / destination_*: the workload (the Deployment), its namespace, `app` and `version`
  labels, canonical service and revision, and principal (the SPIFFE identity in the mTLS
  certificate). A reporter knows itself from its node id; the peer it learns from the metadata
  exchange (the server side: the caller's node id in access_log.PEER_HEADER) or from the
  upstream endpoint it picked (the client side). A value it cannot know is "unknown"; a missing
  canonical revision is "latest".
- destination_service*: the Service, from the cluster's name (`outbound|9080|v1|reviews...`) on
  the client side, from the Services that select the workload on the server side, else the Host
  header.
- source_principal / destination_principal: the URI SANs of the certificates on the connection,
  "unknown" without mTLS. connection_security_policy: "mutual_tls" or "none" as the server saw the
  connection; "unknown" on the client side, which cannot tell.
- request_protocol "http" (or "grpc"), response_code (0 when no response was sent),
  grpc_response_status ("" for plain HTTP), response_flags as Envoy logs them: "-" for none,
  else "UF", "UO", "NR", "FI", "DI", "URX", "UT"... (an RBAC denial is a 403 with "-").

A request that never reached an upstream (a 503 with UO or UF, a 404 NR, an RBAC 403) is counted
all the same, like Istio does: those are the requests a learner most wants to see.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from .access_log import SOURCE, AccessLogEntry
from .workloads import ServiceRef, WorkloadIndex, WorkloadInfo

UNKNOWN = "unknown"
LATEST = "latest"
CLUSTER_NAME = "Kubernetes"  # Istio's cluster name in a single-cluster mesh (source_cluster)
MUTUAL_TLS = "mutual_tls"
NO_TLS = "none"

# Istio's default buckets (istio/proxy's stats plugin): milliseconds, and bytes.
DURATION_BUCKETS_MS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
BYTES_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)

LABEL_NAMES = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
_PASSTHROUGH = ("BlackHoleCluster", "PassthroughCluster", "InboundPassthroughCluster")


def request_labels(entry: AccessLogEntry, workloads: WorkloadIndex) -> dict[str, str]:
    """Istio's labels for one request, from the access log entry of the proxy that reported it."""
    labels = {"reporter": entry.reporter}
    if entry.reporter == SOURCE:
        me = workloads.proxy(entry.proxy_id)
        peer = workloads.endpoint(entry.upstream_host)
        local_san = _first_uri(entry.upstream_local_uri_san)
        peer_san = _first_uri(entry.upstream_peer_uri_san)
        labels.update(_side("source", me, local_san, me.namespace if me else None))
        labels.update(_side("destination", peer, peer_san, _namespace(peer_san, peer)))
        service = _outbound_service(entry, workloads)
        labels.update(_service(service, entry.authority))
        security = UNKNOWN
    else:
        me = workloads.proxy(entry.proxy_id)
        peer = workloads.proxy(entry.peer_metadata_id)
        local_san = _first_uri(entry.downstream_local_uri_san)
        peer_san = _first_uri(entry.downstream_peer_uri_san)
        labels.update(_side("source", peer, peer_san, _namespace(peer_san, peer)))
        labels.update(_side("destination", me, local_san, me.namespace if me else None))
        service = _inbound_service(entry, workloads, me)
        labels.update(_service(service, entry.authority))
        if me is not None:  # the server side names its own namespace
            labels["destination_service_namespace"] = me.namespace
        security = MUTUAL_TLS if peer_san and local_san else NO_TLS
    grpc = (entry.content_type or "").startswith("application/grpc")
    labels.update(
        request_protocol="grpc" if grpc else "http",
        response_code=str(entry.response_code),
        grpc_response_status=(entry.grpc_status or "") if grpc else "",
        response_flags=entry.response_flags or "-",
        connection_security_policy=security,
    )
    return {name: labels[name] for name in LABEL_NAMES}


def _side(
    side: str, workload: WorkloadInfo | None, principal: str | None, namespace: str | None
) -> dict[str, str]:
    """The source_* or destination_* labels of one side of the request."""
    return {
        f"{side}_{name}": value
        for name, value in _workload_labels(workload, principal, namespace).items()
    }


def _workload_labels(
    workload: WorkloadInfo | None, principal: str | None, namespace: str | None
) -> dict[str, str]:
    return {
        "workload": workload.workload if workload else UNKNOWN,
        "workload_namespace": namespace or UNKNOWN,
        "principal": principal or UNKNOWN,
        "app": workload.app if workload else UNKNOWN,
        "version": workload.version if workload else UNKNOWN,
        "canonical_service": workload.canonical_service if workload else UNKNOWN,
        "canonical_revision": workload.canonical_revision if workload else LATEST,
        "cluster": CLUSTER_NAME if workload else UNKNOWN,
    }


def _namespace(san: str | None, workload: WorkloadInfo | None) -> str | None:
    """The peer's namespace: from its certificate (spiffe://.../ns/NAME/sa/...), as Istio
    prefers, else from what is known of the workload."""
    if san:
        parts = san.split("/")
        if "ns" in parts[:-1]:
            return parts[parts.index("ns") + 1]
    return workload.namespace if workload else None


def _outbound_service(entry: AccessLogEntry, workloads: WorkloadIndex) -> ServiceRef | str | None:
    """The client side's Service: the host in the cluster's name (outbound|9080|v1|<host>), or
    the passthrough cluster's own name, or nothing (no route: no cluster)."""
    cluster = entry.upstream_cluster or ""
    if cluster.startswith(_PASSTHROUGH):
        return cluster
    direction, _, rest = cluster.partition("|")
    host = rest.split("|")[-1] if direction == "outbound" and rest else ""
    return workloads.service(host) if host else None


def _inbound_service(
    entry: AccessLogEntry, workloads: WorkloadIndex, me: WorkloadInfo | None
) -> ServiceRef | None:
    """The server side's Service: the one of the workload's Services the Host header names,
    else its first Service (istiod's inbound cluster metadata lists them in that order)."""
    if me is None:
        return None
    host = _host(entry.authority)
    if host:
        named = workloads.service_for_host(host, me.namespace)
        if named is not None and named in me.services:
            return named
    return me.services[0] if me.services else None


def _service(service: ServiceRef | str | None, authority: str | None) -> dict[str, str]:
    """destination_service, _name and _namespace. Without a Service, Istio falls back to the
    Host header, as sent (with its port)."""
    if isinstance(service, ServiceRef):
        return {
            "destination_service": service.fqdn,
            "destination_service_name": service.name,
            "destination_service_namespace": service.namespace,
        }
    return {
        "destination_service": authority or UNKNOWN,
        "destination_service_name": service or authority or UNKNOWN,
        "destination_service_namespace": UNKNOWN,
    }


def _first_uri(sans: str | None) -> str | None:
    """The first URI SAN of a certificate; Envoy logs several separated by commas."""
    if not sans:
        return None
    return sans.split(",")[0].strip() or None


def _host(authority: str | None) -> str:
    if not authority:
        return ""
    if authority.startswith("["):  # [::1]:9080
        return authority[1:].partition("]")[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


# Counting


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, plus one for +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        pairs, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((_bound(bound), running))
        return pairs


@dataclass
class _Series:
    requests: int = 0
    duration: _Histogram = field(default_factory=lambda: _Histogram(DURATION_BUCKETS_MS))
    request_bytes: _Histogram = field(default_factory=lambda: _Histogram(BYTES_BUCKETS))
    response_bytes: _Histogram = field(default_factory=lambda: _Histogram(BYTES_BUCKETS))


class RequestMetrics:
    """istio_requests_total and its histograms, in memory, fed one access log entry at a time.

    Also a prometheus_client collector: `exposition()` is the text Prometheus scrapes.
    Labels are cached by everything they depend on (entry.identity()): a busy mesh repeats a
    few dozen combinations, so most entries cost one dictionary lookup. `workloads_changed()`
    empties the cache.
    """

    CACHE_LIMIT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], _Series] = {}
        self._labels: dict[tuple[object, ...], tuple[str, ...]] = {}

    def record(self, entry: AccessLogEntry, workloads: WorkloadIndex) -> None:
        key = entry.identity()
        values = self._labels.get(key)
        if values is None:
            labels = request_labels(entry, workloads)
            values = tuple(labels[name] for name in LABEL_NAMES)
            if len(self._labels) >= self.CACHE_LIMIT:
                self._labels.clear()
            self._labels[key] = values
        with self._lock:
            series = self._series.get(values)
            if series is None:
                series = self._series[values] = _Series()
            series.requests += 1
            series.duration.observe(entry.duration_ms)
            series.request_bytes.observe(entry.bytes_received)
            series.response_bytes.observe(entry.bytes_sent)

    def workloads_changed(self) -> None:
        self._labels.clear()

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "istio_requests",  # exposed as istio_requests_total
            "Requests handled by the mesh's proxies, counted by each reporter.",
            labels=LABEL_NAMES,
        )
        histograms = {
            "duration": HistogramMetricFamily(
                "istio_request_duration_milliseconds",
                "Duration of requests, in milliseconds.",
                labels=LABEL_NAMES,
            ),
            "request_bytes": HistogramMetricFamily(
                "istio_request_bytes", "Request body sizes, in bytes.", labels=LABEL_NAMES
            ),
            "response_bytes": HistogramMetricFamily(
                "istio_response_bytes", "Response body sizes, in bytes.", labels=LABEL_NAMES
            ),
        }
        with self._lock:
            for values, series in sorted(self._series.items()):
                requests.add_metric(values, series.requests)
                for name, family in histograms.items():
                    histogram: _Histogram = getattr(series, name)
                    family.add_metric(values, histogram.cumulative(), histogram.total)
        yield requests
        yield from histograms.values()

    def exposition(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every series."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _bound(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if value == int(value) else str(value)
