"""SandboxTarget: a check's questions answered by the sandbox mesh on this machine.

The sandbox runs Bookinfo as local processes behind real Envoy sidecars, an Envoy ingress gateway
and a background control plane (istiolab.sandbox). Everything here asks that control plane over
its loopback API (`/status`, `/get`, `/proxies`) or sends real HTTP to the proxies it lists;
nothing reads the sandbox's files behind its back.

How each question is answered:

- resources: `/get`, with the kind named as kubectl's fully qualified resource (so "Gateway" means
  Istio's, as on the kind target); kind "Pod" gives the pods the control plane runs.
- workloads: the namespace's Deployments (`/get deployments`), their pods (`/get pods`, matched
  by ownerReferences) and the pods' state (`/status`: ready "2/2", restarts, sidecar).
- gateway_request: plain HTTP to the ingress gateway's port on 127.0.0.1, as `/status` gives it.
  (http.client, which reads no HTTP_PROXY variable: a learner's proxy is never in the way.)
- mesh_request: what a workload's app does. A pod with a sidecar sends every call through its
  sidecar's HTTP-proxy listener (127.0.0.1:<outbound_port>) in absolute form,
  `GET http://reviews:9080/reviews/0`, so the request takes the sidecar's routes exactly as the
  app's own calls do. A pod without a sidecar reaches Services the way kube-proxy lets it: the
  host names a Service, one of the pods it selects is picked at random, and the request goes
  straight to that pod's endpoint (its sidecar's inbound listener, or its app), in plaintext.
  `source` names a Deployment ("productpage-v1"), a pod, or an `app` label ("ratings") in
  `default`; with several pods, the first by name sends.
- source="curl" (the default): on kind, a dedicated client Deployment with its own identity
  (ServiceAccount `curl`). The sandbox has no such pod, so "curl" borrows one: the productpage
  pod's sidecar when it has one, else the first pod in `default` with a sidecar, else (no pod
  has a sidecar yet: injection is not on) a plain client with no sidecar, which is what the curl
  pod on kind is at that point too. Routing, retries, faults and timeouts behave the same as from
  kind's client; the caller's identity does not: a request from "curl" carries productpage's
  identity (spiffe://cluster.local/ns/default/sa/bookinfo-productpage). A check whose outcome
  depends on who calls (an AuthorizationPolicy) must name its `source` explicitly.
- outside_request: a client in a namespace without injection: no sidecar of its own, plaintext,
  straight to one pod of the Service (short names resolve in `default`, as on kind).
- traces / request_metrics: the sandbox's telemetry process, where `/status` says it listens
  (`zipkin`, `metrics`): Zipkin's query API, as on kind's Zipkin addon (a service name such as
  "details" finds "details.default"), and the `istio_requests_total` samples of its Prometheus
  text, counted from what the proxies saw (istiolab.sandbox.telemetry).
- wait_for_config: every proxy `/proxies` lists (the ingress gateway and each sidecar) runs the
  same LDS, CDS and RDS version, read from its Envoy admin API, until a deadline. `istiolab apply`
  already waits for every proxy's ACK; this covers a check that starts while a change made
  elsewhere is still being pushed. (The kube-proxy stand-in is not a mesh proxy and not listed.)

A sandbox that is not running makes every question raise
TargetUnavailable("the sandbox is not running", fix="istiolab up").
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import SplitResult, urlsplit

from ..errors import IstiolabError
from ..sandbox import api, lifecycle
from ..sandbox.envoy import admin as envoy_admin
from ..sandbox.telemetry import client as telemetry_client
from .base import HttpResult, MetricSample, Span, Target, TargetUnavailable, Workload
from .http import http_request
from .kind.resources import resource_name

LOOPBACK = "127.0.0.1"
MESH_NAMESPACE = "default"  # where Bookinfo runs, and where short Service names resolve
CLIENT = "curl"  # the default mesh_request source: see the module docstring
CLIENT_STAND_IN = "productpage"  # the app label of the pod whose sidecar "curl" borrows
POD_TEMPLATE_HASH = "pod-template-hash"
CLUSTER_DOMAIN = "svc.cluster.local"
API_TIMEOUT = 30.0  # one read-only call to the control plane
POLL_INTERVAL = 0.05  # between two readings of every proxy's configuration version
ADMIN_TIMEOUT = 2.0  # one call to a proxy's admin API


class SandboxTarget(Target):
    """The sandbox mesh whose state lives in `state_dir`, asked through its control plane."""

    name: ClassVar[str] = "sandbox"

    def __init__(self, state_dir: Path = lifecycle.STATE_DIR) -> None:
        self.state_dir = Path(state_dir)

    # The control plane

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        port = lifecycle.control_plane_port(self.state_dir)
        if port is None:
            raise _not_running()
        try:
            return api.call(port, path, body, timeout=API_TIMEOUT)
        except api.ControlPlaneUnreachable:
            raise _not_running() from None

    def _get(self, resource: str, namespace: str | None, kind: str = "") -> list[dict[str, Any]]:
        try:
            return list(self._call("/get", {"kind": resource, "namespace": namespace}) or [])
        except TargetUnavailable:
            raise
        except IstiolabError as error:  # a kind the sandbox does not keep
            raise TargetUnavailable(
                f"the sandbox has no {kind or resource} resources ({error.message})",
                fix=error.fix,
            ) from None

    def _proxies(self) -> list[dict[str, Any]]:
        return list(self._call("/proxies") or [])

    # Resources and workloads

    def resources(self, kind: str, namespace: str | None = "default") -> list[dict[str, Any]]:
        try:
            resource = resource_name(kind)
        except ValueError:
            resource = kind  # not a kind checks usually name: let the sandbox resolve it
        return self._get(resource, namespace, kind)

    def workloads(self, namespace: str = "default") -> list[Workload]:
        deployments = self._get("deployments.apps", namespace)
        pods = self._get("pods", namespace)
        states = {
            (entry.get("namespace"), entry.get("name")): entry
            for entry in self._call("/status").get("workloads") or []
        }
        return parse_workloads(deployments, pods, states)

    # Requests

    def gateway_request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        data: str | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        gateway = urlsplit(str(self._call("/status").get("gateway") or ""))
        if gateway.port is None:
            raise TargetUnavailable(
                "the sandbox's control plane did not say where its ingress gateway listens",
                fix="istiolab status; if it is wrong, istiolab down and istiolab up",
            )
        return http_request(
            gateway.hostname or LOOPBACK,
            gateway.port,
            path if path.startswith("/") else "/" + path,
            method=method,
            headers=headers,
            data=data,
            timeout=timeout,
        )

    def mesh_request(
        self,
        url: str,
        *,
        source: str = "curl",
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        proxies = self._proxies()
        if source == CLIENT:
            sender = client_pod(proxies, MESH_NAMESPACE)
        else:
            owners = {
                str(pod.get("metadata", {}).get("name", "")): owner_deployment(pod)
                for pod in self._get("pods", MESH_NAMESPACE)
            }
            sender = source_pod(proxies, owners, source, MESH_NAMESPACE)
        if sender is None or not sender.get("outbound_port"):
            # No sidecar: the app reaches the Service as kube-proxy lets it, in plaintext.
            return self._direct(url, MESH_NAMESPACE, proxies, method, headers, timeout)
        parsed = _parse(url)
        if parsed is None:
            return _malformed(url)
        parts, _ = parsed
        # The absolute form, as an app that uses its sidecar as HTTP proxy sends it.
        target = f"{parts.scheme or 'http'}://{_authority(parts)}{_origin_form(parts)}"
        return http_request(
            LOOPBACK,
            int(sender["outbound_port"]),
            target,
            method=method,
            headers=_with_host(headers, _authority(parts)),
            timeout=timeout,
        )

    def outside_request(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        return self._direct(url, MESH_NAMESPACE, self._proxies(), method, headers, timeout)

    def _direct(
        self,
        url: str,
        namespace: str,
        proxies: list[dict[str, Any]],
        method: str,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> HttpResult:
        """A request from a client without a sidecar in `namespace`: the URL's host is a Service
        (or an address); the request goes to one of its pods, picked at random."""
        parsed = _parse(url)
        if parsed is None:
            return _malformed(url)
        parts, port = parsed
        found = self.plain_endpoint(parts.hostname or "", port, namespace, proxies)
        if isinstance(found, HttpResult):
            return found
        return http_request(
            *found,
            _origin_form(parts),
            method=method,
            headers=_with_host(headers, _authority(parts)),
            timeout=timeout,
        )

    def plain_endpoint(
        self,
        host: str,
        port: int,
        namespace: str = MESH_NAMESPACE,
        proxies: list[dict[str, Any]] | None = None,
    ) -> tuple[str, int] | HttpResult:
        """Where a client without a sidecar in `namespace` connects for host:port: the address
        itself, or one of the Service's pods, picked at random as kube-proxy's iptables rules do
        (load balancing, not security). An HttpResult says why there is none."""
        if _is_address(host):
            return host, port
        name = service_name(host, namespace)
        service = self._service(*name) if name is not None else None
        if name is None or service is None:
            return HttpResult(status=None, error=f"could not resolve host {host}")
        spec = service.get("spec") or {}
        where = f"Service {name[0]}/{name[1]}"
        if port not in {p.get("port") for p in spec.get("ports") or []}:
            return HttpResult(status=None, error=f"connection refused ({where} has no port {port})")
        pods = proxies if proxies is not None else self._proxies()
        endpoints = selected_pods(pods, name[0], spec.get("selector") or {})
        if not endpoints:
            return HttpResult(status=None, error=f"connection refused ({where} has no endpoints)")
        pod = random.choice(endpoints)  # noqa: S311
        return LOOPBACK, int(pod["endpoint_port"])

    def _service(self, namespace: str, name: str) -> dict[str, Any] | None:
        for service in self._get("services", namespace):
            if (service.get("metadata") or {}).get("name") == name:
                return service
        return None

    # Telemetry

    def traces(self, service: str | None = None, limit: int = 100) -> list[list[Span]]:
        try:
            return telemetry_client.fetch_traces(self.telemetry_url("zipkin"), service, limit)
        except telemetry_client.TelemetryUnavailable as error:
            raise TargetUnavailable(error.message, fix=error.fix) from None

    def request_metrics(self) -> list[MetricSample]:
        try:
            return telemetry_client.fetch_metrics(self.telemetry_url("metrics"))
        except telemetry_client.TelemetryUnavailable as error:
            raise TargetUnavailable(error.message, fix=error.fix) from None

    def telemetry_url(self, key: str) -> str:
        """Where the telemetry process serves `key`: "zipkin" (Zipkin's API, its base URL) or
        "metrics" (the Prometheus text), as the control plane's /status says."""
        url = self._call("/status").get(key)
        if not url:
            what = {"zipkin": "Zipkin API", "metrics": "request metrics"}.get(key, key)
            raise TargetUnavailable(
                f"the sandbox's control plane does not say where its {what} is served: it"
                " predates the telemetry process",
                fix="restart the sandbox: istiolab down, then istiolab up",
            )
        return str(url)

    # Configuration

    def wait_for_config(self, timeout: float = 60.0) -> None:
        """Return once every proxy runs one and the same configuration version."""
        deadline = time.monotonic() + timeout
        while True:
            proxies = [p for p in self._proxies() if p.get("admin_port")]
            readings: dict[str, envoy_admin.AppliedVersions | None] = {}
            for proxy in proxies:
                label = f"{proxy['name']}.{proxy['namespace']}"
                admin = envoy_admin.EnvoyAdmin(
                    int(proxy["admin_port"]), proxy=label, timeout=ADMIN_TIMEOUT
                )
                try:
                    readings[label] = admin.applied_versions()
                except envoy_admin.AdminUnavailable:
                    readings[label] = None  # starting, or restarting after a crash
            stale = stale_proxies(readings)
            if not stale:
                return
            if time.monotonic() >= deadline:
                logs = {f"{p['name']}.{p['namespace']}": p.get("envoy_log", "") for p in proxies}
                listed = "; ".join(f"{label} ({state})" for label, state in sorted(stale.items()))
                where = ", ".join(logs[label] for label in sorted(stale) if logs.get(label))
                raise TargetUnavailable(
                    f"{len(stale)} of {len(readings)} proxies did not run the latest"
                    f" configuration after {timeout:g}s: {listed}",
                    fix="istiolab status; then read the proxies' Envoy logs"
                    + (f": {where}" if where else ""),
                )
            time.sleep(POLL_INTERVAL)  # a poll interval between two readings, not a wait


# Pure helpers: each reads the control plane's answers, so tests can feed them recorded ones.


def parse_workloads(
    deployments: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    states: Mapping[tuple[str, str], Mapping[str, Any]],
) -> list[Workload]:
    """Workloads from `/get deployments`, `/get pods` and `/status`'s workloads by
    (namespace, pod name). A Deployment has a sidecar when all its pods do (and it has one)."""
    owned: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        key = (str(metadata.get("namespace", MESH_NAMESPACE)), owner_deployment(pod))
        owned.setdefault(key, []).append(pod)
    workloads = []
    for deployment in deployments:
        metadata = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        template = spec.get("template") or {}
        namespace = str(metadata.get("namespace", MESH_NAMESPACE))
        name = str(metadata.get("name", ""))
        mine = owned.get((namespace, name), [])
        mine_states = [
            states.get((namespace, str((pod.get("metadata") or {}).get("name", "")))) or {}
            for pod in mine
        ]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        if not labels and mine:
            labels = dict((mine[0].get("metadata") or {}).get("labels") or {})
        labels.pop(POD_TEMPLATE_HASH, None)
        pod_spec = (mine[0].get("spec") or {}) if mine else (template.get("spec") or {})
        workloads.append(
            Workload(
                name=name,
                namespace=namespace,
                labels=labels,
                service_account=_service_account(pod_spec),
                replicas=int(spec.get("replicas", 1)),
                ready=sum(_fully_ready(state.get("ready")) for state in mine_states),
                restarts=sum(int(state.get("restarts") or 0) for state in mine_states),
                has_sidecar=bool(mine)
                and all(
                    _pod_has_sidecar(pod, state)
                    for pod, state in zip(mine, mine_states, strict=True)
                ),
            )
        )
    return sorted(workloads, key=lambda workload: (workload.namespace, workload.name))


def owner_deployment(pod: Mapping[str, Any]) -> str:
    """The Deployment a pod belongs to: its ReplicaSet owner's name minus the template hash
    (reviews-v1-5f7c9d8b6 -> reviews-v1); without an owner, its name minus hash and suffix."""
    metadata = pod.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet" and owner.get("name"):
            return str(owner["name"]).rsplit("-", 1)[0]
    template_hash = (metadata.get("labels") or {}).get(POD_TEMPLATE_HASH)
    name = str(metadata.get("name", ""))
    if template_hash and f"-{template_hash}-" in name:
        return name.rsplit(f"-{template_hash}-", 1)[0]
    return name.rsplit("-", 2)[0]


def client_pod(proxies: Iterable[Mapping[str, Any]], namespace: str) -> Mapping[str, Any] | None:
    """The pod whose sidecar stands in for the curl client: productpage's, else the first pod
    with a sidecar; None when no pod in the namespace has one (a plain client then)."""
    with_sidecar = sorted(
        (
            p
            for p in proxies
            if p.get("kind") == "pod" and p.get("namespace") == namespace and p.get("outbound_port")
        ),
        key=lambda p: str(p.get("name")),
    )
    stand_ins = [p for p in with_sidecar if (p.get("labels") or {}).get("app") == CLIENT_STAND_IN]
    return (stand_ins or with_sidecar or [None])[0]


def source_pod(
    proxies: Iterable[Mapping[str, Any]],
    owners: Mapping[str, str],
    source: str,
    namespace: str,
) -> Mapping[str, Any]:
    """The pod that sends for `source`: the pod of that name, else the first pod of the
    Deployment of that name (`owners`: pod name -> Deployment), else of the app label."""
    pods = sorted(
        (p for p in proxies if p.get("kind") == "pod" and p.get("namespace") == namespace),
        key=lambda p: str(p.get("name")),
    )
    for matches in (
        lambda p: p.get("name") == source,
        lambda p: owners.get(str(p.get("name"))) == source,
        lambda p: (p.get("labels") or {}).get("app") == source,
    ):
        found = [p for p in pods if matches(p)]
        if found:
            return found[0]
    raise IstiolabError(
        f"no pod, Deployment or app label named {source!r} in {namespace}",
        fix=f"list them: istiolab get pods -n {namespace} --show-labels",
    )


def service_name(host: str, namespace: str) -> tuple[str, str] | None:
    """The (namespace, name) of the Service a host names, as cluster DNS resolves it for a pod in
    `namespace`: reviews, reviews.default, reviews.default.svc, reviews.default.svc.cluster.local.
    None for a name that cannot be a Service's."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) == 1:
        return namespace, labels[0]
    suffix = ".".join(labels[2:])
    if len(labels) >= 2 and suffix in ("", "svc", CLUSTER_DOMAIN):
        return labels[1], labels[0]
    return None


def selected_pods(
    proxies: Iterable[Mapping[str, Any]], namespace: str, selector: Mapping[str, str]
) -> list[Mapping[str, Any]]:
    """The pods a Service's selector picks (none for a Service without a selector)."""
    if not selector:
        return []
    return [
        p
        for p in proxies
        if p.get("kind") == "pod"
        and p.get("namespace") == namespace
        and p.get("endpoint_port")
        and all((p.get("labels") or {}).get(k) == v for k, v in selector.items())
    ]


def stale_proxies(readings: Mapping[str, envoy_admin.AppliedVersions | None]) -> dict[str, str]:
    """The proxies not at the newest version any of them runs, each with what it runs instead.

    Versions are the control plane's push times in nanoseconds: the newest is the largest.
    """
    versions = {
        version
        for applied in readings.values()
        if applied is not None
        for version in (applied.listeners, applied.clusters)
        if version
    }
    if not versions:
        return {label: "no configuration yet" for label in readings}
    newest = max(versions, key=lambda v: (int(v) if v.isdigit() else -1, v))
    return {
        label: "admin API not answering" if applied is None else applied.describe()
        for label, applied in readings.items()
        if applied is None or not applied.all_at(newest)
    }


def _not_running() -> TargetUnavailable:
    return TargetUnavailable("the sandbox is not running", fix="istiolab up")


def _fully_ready(ready: object) -> bool:
    """ "2/2" yes, "1/2" no: every container of the pod runs."""
    running, _, total = str(ready or "").partition("/")
    return running.isdigit() and total.isdigit() and int(total) > 0 and running == total


def _service_account(pod_spec: Mapping[str, Any]) -> str:
    account = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount")
    return str(account or "default")


def _pod_has_sidecar(pod: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    if "sidecar" in state:
        return bool(state["sidecar"])
    containers = (pod.get("spec") or {}).get("containers") or []
    return any(container.get("name") == "istio-proxy" for container in containers)


def _parse(url: str) -> tuple[SplitResult, int] | None:
    """The URL's parts and port (80 unless given; 443 for https), or None when it has no host
    or a port that is not a number."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts, port) if parts.hostname else None


def _authority(parts: SplitResult) -> str:
    """The Host header a client sends for a URL: its host and port, without credentials."""
    return parts.netloc.rpartition("@")[2]


def _origin_form(parts: SplitResult) -> str:
    """The request target a client sends to the server itself: path and query."""
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _with_host(headers: Mapping[str, str] | None, host: str) -> dict[str, str]:
    merged = dict(headers or {})
    if not any(name.lower() == "host" for name in merged):
        merged["Host"] = host
    return merged


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _malformed(url: str) -> HttpResult:
    return HttpResult(status=None, error=f"malformed URL: {url!r}")
