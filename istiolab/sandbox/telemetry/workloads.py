"""Who is who in the mesh, for the metrics' labels: the control plane's workloads file.

istio-proxy knows its own workload from its node metadata, and its peer's from the metadata
exchange. The telemetry process has only the access logs, which name a proxy by node id and an
upstream by address (`127.0.0.1:15081`). So the control plane writes, on every change, a file
saying which workload each node id and each address belongs to, with the values Istio's labels
take from it:

    {"workloads": [{"workload": "reviews-v2", "namespace": "default", "pod": "reviews-v2-...",
                    "app": "reviews", "version": "v2",
                    "principal": "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
                    "canonical_service": "reviews", "canonical_revision": "v2",
                    "proxy_id": "sidecar~127.0.0.1~reviews-v2-...",
                    "addresses": ["127.0.0.1:15081", "127.0.0.1:19082"],
                    "services": [{"fqdn": "reviews.default.svc.cluster.local",
                                  "name": "reviews", "namespace": "default"}]}, ...],
     "services": [{"fqdn": ..., "name": ..., "namespace": ...}, ...]}

A workload is a Deployment (Istio's `source_workload` is the Deployment's name, not the pod's).
Its canonical service and revision come from the `service.istio.io/canonical-name` and
`-revision` labels, else from `app` and `version`, as istiod and the sidecar injector set them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..envoy.bootstrap import gateway_node_id, sidecar_node_id
from ..files import PUBLIC_MODE, write_json_atomically
from ..model import CLUSTER_DOMAIN, Gateway, Mesh, Pod, Service

CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"
DEFAULT_REVISION = "latest"  # Istio's canonical revision when a workload has no version label


@dataclass(frozen=True)
class ServiceRef:
    """A Service as Istio's destination_service* labels name it."""

    fqdn: str  # destination_service: reviews.default.svc.cluster.local
    name: str  # destination_service_name: reviews
    namespace: str  # destination_service_namespace: default

    @classmethod
    def of(cls, service: Service) -> ServiceRef:
        return cls(service.fqdn, service.name, service.namespace)

    @classmethod
    def from_fqdn(cls, fqdn: str) -> ServiceRef:
        """name.namespace.svc.cluster.local split into its parts (any other host: name only)."""
        labels = fqdn.split(".")
        if len(labels) >= 3 and labels[2] == "svc":
            return cls(fqdn, labels[0], labels[1])
        return cls(fqdn, fqdn, "unknown")


@dataclass(frozen=True)
class WorkloadInfo:
    """One workload's values for Istio's source_* / destination_* labels."""

    workload: str
    namespace: str
    app: str
    version: str
    principal: str | None
    canonical_service: str
    canonical_revision: str
    services: tuple[ServiceRef, ...] = ()
    proxy_id: str | None = None
    addresses: tuple[str, ...] = ()
    pod: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "namespace": self.namespace,
            "pod": self.pod,
            "app": self.app,
            "version": self.version,
            "principal": self.principal,
            "canonical_service": self.canonical_service,
            "canonical_revision": self.canonical_revision,
            "proxy_id": self.proxy_id,
            "addresses": list(self.addresses),
            "services": [_service_json(service) for service in self.services],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> WorkloadInfo:
        return cls(
            workload=str(document["workload"]),
            namespace=str(document["namespace"]),
            app=str(document.get("app") or "unknown"),
            version=str(document.get("version") or "unknown"),
            principal=document.get("principal") or None,
            canonical_service=str(document.get("canonical_service") or document["workload"]),
            canonical_revision=str(document.get("canonical_revision") or DEFAULT_REVISION),
            services=tuple(_service_ref(service) for service in document.get("services") or ()),
            proxy_id=document.get("proxy_id") or None,
            addresses=tuple(str(address) for address in document.get("addresses") or ()),
            pod=str(document.get("pod") or ""),
        )


# The control plane's side: the document, written atomically.


def workloads_document(mesh: Mesh) -> dict[str, Any]:
    """The workloads file's content for this mesh: every pod, and the ingress gateway."""
    workloads = [_pod_workload(pod, mesh) for pod in mesh.pods]
    workloads.append(_gateway_workload(mesh.gateway))
    return {
        "workloads": [workload.to_json() for workload in workloads],
        "services": [_service_json(ServiceRef.of(service)) for service in mesh.services],
    }


def write_workloads(path: Path, mesh: Mesh) -> None:
    """Write the workloads file atomically: the telemetry process, which rereads it whenever it
    changes, never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, workloads_document(mesh), mode=PUBLIC_MODE)


def _pod_workload(pod: Pod, mesh: Mesh) -> WorkloadInfo:
    labels = pod.labels
    app = labels.get("app") or labels.get("app.kubernetes.io/name")
    version = labels.get("version") or labels.get("app.kubernetes.io/version")
    return WorkloadInfo(
        workload=pod.deployment,
        namespace=pod.namespace,
        pod=pod.name,
        app=app or "unknown",
        version=version or "unknown",
        principal=pod.spiffe_id if pod.sidecar else None,
        canonical_service=labels.get(CANONICAL_NAME) or app or pod.deployment,
        canonical_revision=labels.get(CANONICAL_REVISION) or version or DEFAULT_REVISION,
        services=tuple(ServiceRef.of(s) for s in mesh.services if _selects(s, pod)),
        proxy_id=sidecar_node_id(pod) if pod.sidecar else None,
        # Where callers reach it (its sidecar's inbound listener), and the app itself.
        addresses=tuple(dict.fromkeys(_address(p) for p in (pod.endpoint_port, pod.app_port))),
    )


def _gateway_workload(gateway: Gateway) -> WorkloadInfo:
    app = gateway.labels.get("app") or gateway.name
    return WorkloadInfo(
        workload=gateway.name,
        namespace=gateway.namespace,
        pod=gateway.name,
        app=app,
        version=gateway.labels.get("version") or "unknown",
        principal=gateway.spiffe_id,
        canonical_service=gateway.labels.get(CANONICAL_NAME) or app,
        canonical_revision=gateway.labels.get(CANONICAL_REVISION) or DEFAULT_REVISION,
        services=(
            ServiceRef(
                f"{gateway.name}.{gateway.namespace}.svc.{CLUSTER_DOMAIN}",
                gateway.name,
                gateway.namespace,
            ),
        ),
        proxy_id=gateway_node_id(gateway),
        addresses=(_address(gateway.port),),
    )


def _selects(service: Service, pod: Pod) -> bool:
    return (
        service.namespace == pod.namespace
        and bool(service.selector)
        and all(pod.labels.get(key) == value for key, value in service.selector.items())
    )


def _address(port: int) -> str:
    return f"127.0.0.1:{port}"


def _service_json(service: ServiceRef) -> dict[str, str]:
    return {"fqdn": service.fqdn, "name": service.name, "namespace": service.namespace}


def _service_ref(document: Mapping[str, Any]) -> ServiceRef:
    return ServiceRef(str(document["fqdn"]), str(document["name"]), str(document["namespace"]))


# The telemetry process's side: looking things up.


class WorkloadIndex:
    """The workloads file, indexed by node id, by address and by Service host.

    `merged` keeps what an older file said about proxies and addresses the newer one no longer
    lists: log lines written by a pod that has since been deleted still get its labels (when the
    telemetry process restarts and reads the logs from the start, for one).
    """

    def __init__(self, workloads: Iterable[WorkloadInfo] = (), services: Iterable[ServiceRef] = ()):
        self.by_proxy: dict[str, WorkloadInfo] = {}
        self.by_address: dict[str, WorkloadInfo] = {}
        self.services: dict[str, ServiceRef] = {}
        for service in services:
            self.services[service.fqdn] = service
        for workload in workloads:
            if workload.proxy_id:
                self.by_proxy[workload.proxy_id] = workload
            for address in workload.addresses:
                self.by_address[address] = workload
            for service in workload.services:
                self.services.setdefault(service.fqdn, service)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> WorkloadIndex:
        return cls(
            (WorkloadInfo.from_json(entry) for entry in document.get("workloads") or ()),
            (_service_ref(entry) for entry in document.get("services") or ()),
        )

    def merged(self, newer: WorkloadIndex) -> WorkloadIndex:
        """This index updated with `newer`: what both know, `newer` says."""
        index = WorkloadIndex()
        index.by_proxy = {**self.by_proxy, **newer.by_proxy}
        index.by_address = {**self.by_address, **newer.by_address}
        index.services = {**self.services, **newer.services}
        return index

    def proxy(self, node_id: str | None) -> WorkloadInfo | None:
        return self.by_proxy.get(node_id) if node_id else None

    def endpoint(self, address: str | None) -> WorkloadInfo | None:
        return self.by_address.get(address) if address else None

    def service(self, fqdn: str) -> ServiceRef:
        return self.services.get(fqdn) or ServiceRef.from_fqdn(fqdn)

    def service_for_host(self, host: str, namespace: str) -> ServiceRef | None:
        """The Service a Host header names, as cluster DNS resolves it from `namespace`:
        reviews, reviews.default, reviews.default.svc, or the fqdn."""
        labels = host.lower().rstrip(".").split(".")
        if len(labels) == 1:
            candidates = [f"{labels[0]}.{namespace}.svc.{CLUSTER_DOMAIN}"]
        elif len(labels) in (2, 3):
            candidates = [f"{labels[0]}.{labels[1]}.svc.{CLUSTER_DOMAIN}"]
        else:
            candidates = [".".join(labels)]
        for fqdn in candidates:
            if fqdn in self.services:
                return self.services[fqdn]
        return None


def read_workloads(path: Path) -> WorkloadIndex:
    """The index of a workloads file; ValueError when it is not one."""
    try:
        document = json.loads(Path(path).read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a workloads document")
    try:
        return WorkloadIndex.from_document(document)
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a workloads document: {error!r}") from None
