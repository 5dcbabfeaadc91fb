"""The questions a lab check may ask of the mesh, whichever target runs it.

Both targets answer the same questions with the same types, so one set of checks runs on a kind
cluster with real Istio and on the sandbox. A check that only makes sense on one target (say,
"the istio-proxy container is in the pod") asks `target.name` and skips elsewhere with a reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import IstiolabError


class TargetUnavailable(IstiolabError):
    """The target cannot answer at all (no cluster, sandbox not running); `fix` says what to do."""


@dataclass(frozen=True)
class HttpResult:
    """One HTTP exchange as the client saw it.

    `status` is None when no HTTP answer came back at all: the connection was refused or reset (as
    under STRICT mTLS for a plaintext caller), or the request timed out; `error` then says which.
    """

    status: int | None
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Workload:
    """A Deployment as a check sees it: its pods' labels, identity, health and sidecar."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    service_account: str
    replicas: int
    ready: int
    restarts: int
    has_sidecar: bool


@dataclass(frozen=True)
class MetricSample:
    """One sample of a Prometheus metric, e.g. istio_requests_total{...} 42."""

    name: str
    labels: Mapping[str, str]
    value: float


# A Zipkin v2 span, as the Zipkin API serves it: {"traceId", "id", "parentId", "name", "kind",
# "localEndpoint": {"serviceName"}, "timestamp", "duration", "tags", ...}.
Span = Mapping[str, Any]


class Target(ABC):
    name: ClassVar[str]

    @abstractmethod
    def resources(self, kind: str, namespace: str | None = "default") -> list[dict[str, Any]]:
        """The resources of one kind (e.g. "VirtualService") as the API returns them.

        `namespace=None` means all namespaces.
        """

    @abstractmethod
    def workloads(self, namespace: str = "default") -> list[Workload]:
        """The Deployments in a namespace, with their pods' state."""

    @abstractmethod
    def gateway_request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        data: str | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        """A request from the learner's machine through the ingress gateway (localhost:8080)."""

    @abstractmethod
    def mesh_request(
        self,
        url: str,
        *,
        source: str = "curl",
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        """A request from inside the mesh, sent by workload `source` through its sidecar.

        `url` names a Service as a pod would: "http://reviews:9080/reviews/0".
        """

    @abstractmethod
    def outside_request(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        """A plaintext request from a client outside the mesh (a pod with no sidecar)."""

    @abstractmethod
    def traces(self, service: str | None = None, limit: int = 100) -> list[list[Span]]:
        """Recent traces from the Zipkin-compatible collector, each a list of spans."""

    @abstractmethod
    def request_metrics(self) -> list[MetricSample]:
        """The istio_requests_total samples the mesh has counted so far."""

    @abstractmethod
    def wait_for_config(self, timeout: float = 60.0) -> None:
        """Return once every proxy has the latest configuration; TargetUnavailable on timeout."""
