"""KindTarget: a check's questions answered by kubectl and istioctl against a real cluster.

How each question is answered:

- resources / workloads: `kubectl get ... -o json`.
- gateway_request: plain HTTP from this machine to 127.0.0.1:${INGRESS_HOST_PORT}, which the kind
  node publishes and maps to the ingress gateway's NodePort.
- mesh_request: `kubectl exec deploy/curl -c curl -- curl ...` in `default`, from the client in
  manifests/clients/curl.yaml (applied on first use), so the request leaves through its sidecar.
  Any other `source` sends the request from that workload's own container, with its Python.
- outside_request: the same client in the namespace `outside`, where injection is disabled
  (manifests/clients/outside.yaml): no sidecar, so plaintext.
- traces: the Jaeger addon's query API (or Zipkin's, if that addon is installed instead) through
  a `kubectl port-forward`, converted to Zipkin v2 spans.
- request_metrics: Prometheus' HTTP API through a `kubectl port-forward`.
- wait_for_config: `istioctl proxy-status` until no proxy is stale.

The context is $KUBE_CONTEXT, else kind-${KIND_CLUSTER_NAME} (versions.env).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

from ... import versions
from ...errors import IstiolabError
from ..base import HttpResult, MetricSample, Span, Target, TargetUnavailable, Workload
from ..http import fetch_json, http_request
from . import clients, telemetry
from .layout import CLIENT, CLIENTS_DIR, ISTIO_NAMESPACE, MESH_NAMESPACE, OUTSIDE_NAMESPACE, SIDECAR
from .port_forward import port_forward
from .proxy_status import parse_proxy_status_json, parse_proxy_status_table
from .resources import resource_group, resource_name
from .runner import KUBECTL_TIMEOUT, CommandFailed, Runner, default_context, find_istioctl
from .workloads import parse_workloads

ROLLOUT_TIMEOUT = 180.0  # pulling the client image into a fresh kind node can take a while
POLL_INTERVAL = 0.5  # between two `istioctl proxy-status` calls
TRACE_LOOKBACK = 3600.0  # seconds of traces to search


class KindTarget(Target):
    """A kind cluster (or any cluster, by context) running real Istio, asked through kubectl."""

    name: ClassVar[str] = "kind"

    def __init__(
        self,
        context: str | None = None,
        *,
        gateway_host: str = "127.0.0.1",
        gateway_port: int | None = None,
        kubectl: str = "kubectl",
        istioctl: str | None = None,
        clients_dir: Path = CLIENTS_DIR,
    ) -> None:
        self.context = context or default_context()
        self.kubectl = Runner("kubectl", kubectl, self.context)
        self.gateway_host = gateway_host
        self.gateway_port = gateway_port or int(versions.get("INGRESS_HOST_PORT"))
        self._istioctl = istioctl
        self.clients_dir = clients_dir
        self._clients_ready: set[str] = set()

    # Resources and workloads

    def resources(self, kind: str, namespace: str | None = "default") -> list[dict[str, Any]]:
        resource = resource_name(kind)
        scope = ["-A"] if namespace is None else ["-n", namespace]
        try:
            document = self.kubectl.get_json("get", resource, *scope)
        except CommandFailed as error:
            if "doesn't have a resource type" in error.stderr:
                raise self._missing_api(kind, resource) from None
            raise
        return list(document.get("items") or [])

    def _missing_api(self, kind: str, resource: str) -> TargetUnavailable:
        group = resource_group(resource)
        if group.endswith("istio.io"):
            what, fix = "Istio is not installed", "install it with ./scripts/cluster-up.sh"
        elif group == "gateway.networking.k8s.io":
            what = "the Kubernetes Gateway API CRDs are not installed"
            fix = "./scripts/cluster-up.sh installs the pinned ones"
        else:
            what, fix = f"the API group {group or 'core'} is not served", "./scripts/cluster-up.sh"
        return TargetUnavailable(f"the cluster has no {kind} resources: {what}", fix=fix)

    def workloads(self, namespace: str = "default") -> list[Workload]:
        deployments = self.kubectl.get_json("get", "deployments.apps", "-n", namespace)
        pods = self.kubectl.get_json("get", "pods", "-n", namespace)
        return parse_workloads(deployments, pods)

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
        return http_request(
            self.gateway_host,
            self.gateway_port,
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
        if source == CLIENT:
            self.ensure_client(MESH_NAMESPACE)
            return self._exec_request(
                MESH_NAMESPACE,
                f"deployment/{CLIENT}",
                CLIENT,
                clients.curl_command,
                url,
                method,
                headers,
                timeout,
            )
        deployment, container = self._source_workload(source)
        return self._exec_request(
            MESH_NAMESPACE,
            f"deployment/{deployment}",
            container,
            clients.python_command,
            url,
            method,
            headers,
            timeout,
        )

    def outside_request(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        self.ensure_client(OUTSIDE_NAMESPACE)
        return self._exec_request(
            OUTSIDE_NAMESPACE,
            f"deployment/{CLIENT}",
            CLIENT,
            clients.curl_command,
            clients.qualify_url(url, MESH_NAMESPACE),
            method,
            headers,
            timeout,
        )

    def _exec_request(
        self,
        namespace: str,
        target: str,
        container: str,
        command: clients.ClientCommand,
        url: str,
        method: str,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> HttpResult:
        token = clients.client_token()
        where = ["exec", "-n", namespace, target, "-c", container]
        argv = [*where, "--", *command(url, method, headers, timeout, token)]
        completed = self.kubectl.run(*argv, timeout=timeout + KUBECTL_TIMEOUT)
        exit_code = clients.remote_exit_code(completed.returncode, completed.stderr)
        if exit_code is None:  # kubectl itself failed: no such pod, container not running, ...
            raise self.kubectl.failure(where, completed.returncode, completed.stderr)
        return clients.parse_client_output(completed.stdout, exit_code, completed.stderr, token)

    def _source_workload(self, source: str) -> tuple[str, str]:
        """The Deployment named `source`, or else the one labelled app=`source`, and the container
        to send from (its first one that is not the sidecar)."""
        deployments = self.kubectl.get_json("get", "deployments.apps", "-n", MESH_NAMESPACE)
        items = sorted(deployments.get("items") or [], key=lambda d: d["metadata"]["name"])
        chosen = next((d for d in items if d["metadata"]["name"] == source), None) or next(
            (
                d
                for d in items
                if ((d["spec"]["template"].get("metadata") or {}).get("labels") or {}).get("app")
                == source
            ),
            None,
        )
        if chosen is None:
            raise IstiolabError(
                f"no Deployment named {source!r} or labelled app={source} in {MESH_NAMESPACE}",
                fix=f"kubectl --context {self.context} -n {MESH_NAMESPACE} get deploy -L app",
            )
        containers = [
            c["name"]
            for c in chosen["spec"]["template"]["spec"].get("containers") or []
            if c["name"] != SIDECAR
        ]
        return chosen["metadata"]["name"], containers[0]

    def ensure_client(self, namespace: str) -> None:
        """Make sure the curl client runs in `namespace` (applying its manifest on first use).

        In the mesh namespace the client must also have its sidecar once injection is on there,
        so a pod started before injection was enabled is restarted.
        """
        if namespace in self._clients_ready:
            return
        manifest = self.clients_dir / (
            "outside.yaml" if namespace == OUTSIDE_NAMESPACE else "curl.yaml"
        )
        client = next((w for w in self._workloads_or_empty(namespace) if w.name == CLIENT), None)
        if client is None or client.ready < 1:
            if not manifest.is_file():
                raise TargetUnavailable(
                    f"the client manifest {manifest} is missing",
                    fix="run istiolab from a clone of the course repository",
                )
            self.kubectl.check("apply", "-n", namespace, "-f", str(manifest))
            self._rollout(namespace)
            client = next((w for w in self.workloads(namespace) if w.name == CLIENT), None)
        if namespace == OUTSIDE_NAMESPACE:
            self._clients_ready.add(namespace)
            return
        if client is not None and not client.has_sidecar and self._injection_enabled(namespace):
            self.kubectl.check("rollout", "restart", "-n", namespace, f"deployment/{CLIENT}")
            self._rollout(namespace)
            client = next((w for w in self.workloads(namespace) if w.name == CLIENT), None)
        if client is not None and client.has_sidecar:
            self._clients_ready.add(namespace)

    def _workloads_or_empty(self, namespace: str) -> list[Workload]:
        try:
            return self.workloads(namespace)
        except CommandFailed as error:
            if error.not_found:
                return []
            raise

    def _rollout(self, namespace: str) -> None:
        self.kubectl.check(
            "rollout",
            "status",
            "-n",
            namespace,
            f"deployment/{CLIENT}",
            f"--timeout={ROLLOUT_TIMEOUT:g}s",
            timeout=ROLLOUT_TIMEOUT + KUBECTL_TIMEOUT,
        )

    def _injection_enabled(self, namespace: str) -> bool:
        labels = (
            self.kubectl.get_json("get", "namespace", namespace).get("metadata", {}).get("labels")
            or {}
        )
        return labels.get("istio-injection") == "enabled" or "istio.io/rev" in labels

    # Telemetry

    def _addon_service(self, name: str, addon: str) -> dict[str, Any]:
        try:
            return self.kubectl.get_json("get", "service", name, "-n", ISTIO_NAMESPACE)
        except CommandFailed as error:
            if not error.not_found:
                raise
        raise TargetUnavailable(
            f"the {addon} addon is not installed: no Service {name} in {ISTIO_NAMESPACE}",
            fix=(
                f"kubectl --context {self.context} apply -f"
                f" .bin/istio-{versions.get('ISTIO_VERSION')}/samples/addons/{addon}.yaml"
                " (./scripts/cluster-up.sh installs the addons)"
            ),
        )

    def traces(self, service: str | None = None, limit: int = 100) -> list[list[Span]]:
        backend = telemetry.tracing_backend(self._addon_service("tracing", "jaeger"))
        with port_forward(
            self.kubectl, f"svc/{backend.service}", backend.port, namespace=ISTIO_NAMESPACE
        ) as port:
            if backend.kind == "zipkin":
                return self._zipkin_traces(port, service, limit)
            return self._jaeger_traces(port, service, limit)

    def _unreadable(self, what: str, result: HttpResult) -> TargetUnavailable:
        answer = f"HTTP {result.status}" if result.status else result.error
        return TargetUnavailable(
            f"{what} did not answer as expected ({answer})",
            fix=f"kubectl --context {self.context} -n {ISTIO_NAMESPACE} get pods",
        )

    def _jaeger_traces(self, port: int, service: str | None, limit: int) -> list[list[Span]]:
        # The addon serves its UI and API under /jaeger (jaeger_query base_path); older builds at /.
        for prefix in ("/jaeger/api", "/api"):
            result, document = fetch_json(port, f"{prefix}/services")
            if isinstance(document, dict):
                break
        else:
            raise self._unreadable("Jaeger's query API", result)
        known = [str(name) for name in document.get("data") or []]
        if service is None:
            names = [name for name in known if not name.startswith("jaeger")]
        else:
            resolved = telemetry.resolve_service_name(service, known)
            names = [resolved] if resolved else []
        end = int(time.time() * 1_000_000)
        found: dict[str, list[Span]] = {}
        for name in names:
            query = urlencode(
                {
                    "service": name,
                    "limit": limit,
                    "start": end - int(TRACE_LOOKBACK * 1e6),
                    "end": end,
                }
            )
            result, answer = fetch_json(port, f"{prefix}/traces?{query}")
            if not isinstance(answer, dict):
                raise self._unreadable("Jaeger's query API", result)
            for trace in answer.get("data") or []:
                found.setdefault(str(trace.get("traceID")), telemetry.jaeger_to_zipkin(trace))
        return telemetry.newest_first(list(found.values()))[:limit]

    def _zipkin_traces(self, port: int, service: str | None, limit: int) -> list[list[Span]]:
        parameters: dict[str, Any] = {
            "limit": limit,
            "lookback": int(TRACE_LOOKBACK * 1000),
            "endTs": int(time.time() * 1000),
        }
        if service is not None:
            result, known = fetch_json(port, "/zipkin/api/v2/services")
            if not isinstance(known, list):
                raise self._unreadable("Zipkin's API", result)
            resolved = telemetry.resolve_service_name(
                service.lower(), [str(name) for name in known]
            )
            if resolved is None:
                return []
            parameters["serviceName"] = resolved
        result, document = fetch_json(port, f"/zipkin/api/v2/traces?{urlencode(parameters)}")
        try:
            return telemetry.newest_first(telemetry.parse_zipkin_traces(document))[:limit]
        except ValueError:
            raise self._unreadable("Zipkin's API", result) from None

    def request_metrics(self) -> list[MetricSample]:
        self._addon_service("prometheus", "prometheus")
        with port_forward(self.kubectl, "svc/prometheus", 9090, namespace=ISTIO_NAMESPACE) as port:
            result, document = fetch_json(
                port, "/api/v1/query?" + urlencode({"query": "istio_requests_total"})
            )
        if not isinstance(document, dict):
            raise self._unreadable("Prometheus", result)
        try:
            return telemetry.parse_prometheus_vector(document)
        except (ValueError, KeyError, TypeError) as error:
            raise TargetUnavailable(
                f"Prometheus could not answer: {error}",
                fix=f"kubectl --context {self.context} -n {ISTIO_NAMESPACE} logs deploy/prometheus",
            ) from None

    # Configuration

    def istioctl(self) -> Runner:
        binary = self._istioctl or find_istioctl()
        if binary is None:
            pinned = f".bin/istio-{versions.get('ISTIO_VERSION')}/bin/istioctl"
            raise TargetUnavailable(
                f"istioctl was not found (neither {pinned} nor one on PATH)",
                fix="./scripts/cluster-up.sh downloads the pinned istioctl into .bin/",
            )
        return Runner("istioctl", binary, self.context, timeout=KUBECTL_TIMEOUT)

    def proxy_status(self) -> dict[str, list[str]]:
        """Every proxy istiod knows, with its stale xDS types (empty when it is up to date)."""
        istioctl = self.istioctl()
        completed = istioctl.run("proxy-status", "--output", "json")
        if completed.returncode == 0:
            parsed = parse_proxy_status_json(completed.stdout)
            if parsed is not None:
                return parsed
        elif (
            "unknown flag" not in completed.stderr
            and "unknown shorthand flag" not in completed.stderr
        ):
            raise self._istioctl_failure(istioctl, completed)
        completed = istioctl.run("proxy-status")
        if completed.returncode != 0:
            raise self._istioctl_failure(istioctl, completed)
        return parse_proxy_status_table(completed.stdout)

    def _istioctl_failure(
        self, istioctl: Runner, completed: subprocess.CompletedProcess[str]
    ) -> IstiolabError:
        error = istioctl.failure(["proxy-status"], completed.returncode, completed.stderr)
        if isinstance(error, CommandFailed):
            error.fix = (
                f"is istiod running? kubectl --context {self.context} -n {ISTIO_NAMESPACE} get pods"
                " (./scripts/cluster-up.sh installs Istio)"
            )
        return error

    def wait_for_config(self, timeout: float = 60.0) -> None:
        """Return once no proxy is stale in two proxy-status readings in a row.

        Two readings, because a change applied a moment ago may not have been pushed yet: istiod
        debounces changes for a short while before it sends them, and until then the old
        configuration reads SYNCED.
        """
        deadline = time.monotonic() + timeout
        clean_readings = 0
        while True:
            stale = {name: types for name, types in self.proxy_status().items() if types}
            clean_readings = 0 if stale else clean_readings + 1
            if clean_readings >= 2:
                return
            if time.monotonic() >= deadline:
                if not stale:
                    return
                listed = "; ".join(
                    f"{name} ({', '.join(types)})" for name, types in sorted(stale.items())
                )
                raise TargetUnavailable(
                    f"{len(stale)} proxies still had stale configuration after {timeout:g}s:"
                    f" {listed}",
                    fix=(
                        f"istioctl --context {self.context} proxy-status; then read istiod's log:"
                        f" kubectl --context {self.context} -n {ISTIO_NAMESPACE} logs deploy/istiod"
                    ),
                )
            time.sleep(POLL_INTERVAL)  # a poll interval between two istioctl calls, not a wait
