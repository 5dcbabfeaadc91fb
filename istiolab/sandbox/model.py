"""What the sandbox's control plane knows about the mesh, as istiod would see it.

The registry (registry.py) builds these from the Kubernetes resources a learner applied: a
Service is a name with ports and a selector; a Pod is one running copy of a Deployment, here a
local process on 127.0.0.1 with its own ports. The translator (translate/) turns them, together
with the Istio resources, into Envoy configuration for every proxy. Both sides use only these
types, so each can be tested without the other.

Ports in the sandbox: every process listens on 127.0.0.1, so where Kubernetes gives each pod an IP
and lets every pod use port 9080, the sandbox gives each pod its own ports instead:
- `app_port`: where the app listens (`python -m bookinfo serve ... --port app_port`);
- with a sidecar, `inbound_port`: the sidecar's inbound listener, in front of the app (what a
  Service's endpoint points at, like iptables sending the pod's :9080 to Envoy);
- with a sidecar, `outbound_port`: the sidecar's HTTP-proxy listener, which the app uses as its
  HTTP_PROXY (Istio's `proxyHttpPort` mode);
- with a sidecar, `admin_port`: the sidecar's Envoy admin API (Istio's 15000).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ServicePort:
    port: int  # the Service port, e.g. 9080
    name: str = ""  # e.g. "http"; Istio derives the protocol from it (or from app_protocol)
    target_port: int | str | None = None  # the container port (or its name); None: same as port
    app_protocol: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def fqdn(self) -> str:
        """reviews.default.svc.cluster.local: the name Istio uses for the service everywhere."""
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass(frozen=True)
class SidecarPorts:
    inbound_port: int
    outbound_port: int
    admin_port: int


@dataclass(frozen=True)
class Pod:
    """One running copy of a Deployment: an app process, and its sidecar if injected."""

    name: str  # e.g. reviews-v2-5f7c9d8b6-x2k4p; also the app's HOSTNAME
    namespace: str
    deployment: str
    labels: Mapping[str, str]
    service_account: str
    app_port: int
    container_ports: Mapping[str, int] = field(default_factory=dict)  # name -> declared port
    sidecar: SidecarPorts | None = None

    @property
    def address(self) -> str:
        return "127.0.0.1"

    @property
    def endpoint_port(self) -> int:
        """Where a caller reaches this pod: its sidecar's inbound listener, else the app itself."""
        return self.sidecar.inbound_port if self.sidecar else self.app_port

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{CLUSTER_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True)
class Gateway:
    """The ingress gateway: an Envoy with no app, labelled like Istio's (istio: ingressgateway)."""

    name: str = "istio-ingressgateway"
    namespace: str = "istio-system"
    labels: Mapping[str, str] = field(
        default_factory=lambda: {"istio": "ingressgateway", "app": "istio-ingressgateway"}
    )
    port: int = 8080  # where learners reach it: http://localhost:8080
    admin_port: int = 15000
    service_account: str = "istio-ingressgateway-service-account"

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{CLUSTER_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True)
class Mesh:
    """Everything the translator needs: the registry plus the Istio resources, as applied."""

    services: tuple[Service, ...]
    pods: tuple[Pod, ...]
    gateway: Gateway
    # Istio resources by kind ("VirtualService", "DestinationRule", "Gateway", ...), each the
    # parsed YAML object as applied (already validated).
    istio: Mapping[str, tuple[Mapping, ...]] = field(default_factory=dict)

    def pods_of(self, service: Service) -> list[Pod]:
        return [
            pod
            for pod in self.pods
            if pod.namespace == service.namespace
            and service.selector
            and all(pod.labels.get(k) == v for k, v in service.selector.items())
        ]
