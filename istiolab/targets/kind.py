"""The kind target: a check's questions answered by kubectl and istioctl against a real cluster.

Everything the cluster is asked goes through one small runner (`Runner`) that executes
`kubectl --context CTX ...` with a fixed argument list and a timeout, and turns the three ways a
cluster cannot answer at all (no kubectl, no such context, no reachable API server) into a
TargetUnavailable that says what to do. What comes back is read by pure functions
(`parse_workloads`, `parse_client_output`, `parse_prometheus_vector`, `jaeger_to_zipkin`,
`parse_proxy_status_table`, ...) that the tests feed with recorded documents.

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

import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from .. import versions
from ..errors import IstiolabError
from .base import HttpResult, MetricSample, Span, Target, TargetUnavailable, Workload

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS_DIR = REPO_ROOT / "manifests" / "clients"

ISTIO_NAMESPACE = "istio-system"
MESH_NAMESPACE = "default"  # where Bookinfo and the in-mesh client run
OUTSIDE_NAMESPACE = "outside"  # injection disabled: a client there has no sidecar
CLIENT = "curl"  # the client Deployment, its container and its ServiceAccount
SIDECAR = "istio-proxy"

KUBECTL_TIMEOUT = 30.0  # seconds for one kubectl call that is not itself waiting on something
ROLLOUT_TIMEOUT = 180.0  # pulling the client image into a fresh kind node can take a while
PORT_FORWARD_TIMEOUT = 30.0
POLL_INTERVAL = 0.5  # between two `istioctl proxy-status` calls
TRACE_LOOKBACK = 3600.0  # seconds of traces to search


# --- Kinds ------------------------------------------------------------------------------------

# Every kind a check may ask about, as the fully qualified resource name kubectl takes. Qualified
# names keep `kubectl get` from guessing: "gateways" alone could be Istio's or the Gateway API's.
KIND_RESOURCES: Mapping[str, str] = {
    # Kubernetes
    "Namespace": "namespaces",
    "Pod": "pods",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Endpoints": "endpoints",
    "EndpointSlice": "endpointslices.discovery.k8s.io",
    "Deployment": "deployments.apps",
    "ReplicaSet": "replicasets.apps",
    "StatefulSet": "statefulsets.apps",
    "DaemonSet": "daemonsets.apps",
    "Job": "jobs.batch",
    # Istio
    "VirtualService": "virtualservices.networking.istio.io",
    "DestinationRule": "destinationrules.networking.istio.io",
    "Gateway": "gateways.networking.istio.io",
    "ServiceEntry": "serviceentries.networking.istio.io",
    "Sidecar": "sidecars.networking.istio.io",
    "EnvoyFilter": "envoyfilters.networking.istio.io",
    "WorkloadEntry": "workloadentries.networking.istio.io",
    "WorkloadGroup": "workloadgroups.networking.istio.io",
    "ProxyConfig": "proxyconfigs.networking.istio.io",
    "PeerAuthentication": "peerauthentications.security.istio.io",
    "AuthorizationPolicy": "authorizationpolicies.security.istio.io",
    "RequestAuthentication": "requestauthentications.security.istio.io",
    "Telemetry": "telemetries.telemetry.istio.io",
    "WasmPlugin": "wasmplugins.extensions.istio.io",
    # Kubernetes Gateway API ("Gateway" alone means Istio's; ask for
    # "Gateway.gateway.networking.k8s.io" for the Gateway API's)
    "GatewayClass": "gatewayclasses.gateway.networking.k8s.io",
    "HTTPRoute": "httproutes.gateway.networking.k8s.io",
    "GRPCRoute": "grpcroutes.gateway.networking.k8s.io",
    "ReferenceGrant": "referencegrants.gateway.networking.k8s.io",
    "TLSRoute": "tlsroutes.gateway.networking.k8s.io",
    "TCPRoute": "tcproutes.gateway.networking.k8s.io",
    "UDPRoute": "udproutes.gateway.networking.k8s.io",
    "BackendTLSPolicy": "backendtlspolicies.gateway.networking.k8s.io",
}
_PLURALS = {kind: resource.split(".", 1)[0] for kind, resource in KIND_RESOURCES.items()}


def resource_name(kind: str) -> str:
    """The kubectl name of a kind's resource, e.g. "virtualservices.networking.istio.io".

    "Kind.group" picks the group ("Gateway.gateway.networking.k8s.io"), and a resource name that
    is already qualified ("virtualservices.networking.istio.io") is taken as it is.
    """
    if kind in KIND_RESOURCES:
        return KIND_RESOURCES[kind]
    name, dot, group = kind.partition(".")
    if dot and group:
        plural = _PLURALS.get(name)
        return f"{plural}.{group}" if plural else kind
    raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(sorted(KIND_RESOURCES))}")


def _resource_group(resource: str) -> str:
    return resource.partition(".")[2]


# --- Workloads --------------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) selects `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _sidecar_init_containers(pod: Mapping[str, Any]) -> set[str]:
    """Names of a pod's native sidecars: init containers with restartPolicy Always."""
    spec = pod.get("spec") or {}
    return {
        container.get("name", "")
        for container in spec.get("initContainers") or []
        if container.get("restartPolicy") == "Always"
    }


def pod_has_sidecar(pod: Mapping[str, Any]) -> bool:
    """Whether the pod runs Istio's proxy, as a container or as a native sidecar init container."""
    spec = pod.get("spec") or {}
    containers = {container.get("name") for container in spec.get("containers") or []}
    return SIDECAR in containers or SIDECAR in _sidecar_init_containers(pod)


def pod_restarts(pod: Mapping[str, Any]) -> int:
    """Restarts as kubectl's RESTARTS column counts them: containers plus native sidecars."""
    status = pod.get("status") or {}
    restarts = sum(int(s.get("restartCount", 0)) for s in status.get("containerStatuses") or [])
    sidecars = _sidecar_init_containers(pod)
    restarts += sum(
        int(s.get("restartCount", 0))
        for s in status.get("initContainerStatuses") or []
        if s.get("name") in sidecars
    )
    return restarts


def parse_workloads(deployments: Mapping[str, Any], pods: Mapping[str, Any]) -> list[Workload]:
    """Workloads from `kubectl get deployments -o json` and `kubectl get pods -o json`.

    A Deployment's pods are those its selector picks in its namespace, leaving out pods already
    being deleted. It has a sidecar when every one of them does (and there is at least one).
    """
    live_pods = [
        pod
        for pod in pods.get("items") or []
        if not pod.get("metadata", {}).get("deletionTimestamp")
    ]
    workloads = []
    for deployment in deployments.get("items") or []:
        metadata = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        template = spec.get("template") or {}
        pod_spec = template.get("spec") or {}
        namespace = metadata.get("namespace", MESH_NAMESPACE)
        selector = spec.get("selector") or {}
        owned = [
            pod
            for pod in live_pods
            if pod.get("metadata", {}).get("namespace", namespace) == namespace
            and selector_matches(selector, pod.get("metadata", {}).get("labels") or {})
        ]
        workloads.append(
            Workload(
                name=metadata.get("name", ""),
                namespace=namespace,
                labels=dict((template.get("metadata") or {}).get("labels") or {}),
                service_account=(
                    pod_spec.get("serviceAccountName")
                    or pod_spec.get("serviceAccount")
                    or "default"
                ),
                replicas=int(spec.get("replicas", 1)),
                ready=int((deployment.get("status") or {}).get("readyReplicas", 0)),
                restarts=sum(pod_restarts(pod) for pod in owned),
                has_sidecar=bool(owned) and all(pod_has_sidecar(pod) for pod in owned),
            )
        )
    return sorted(workloads, key=lambda workload: (workload.namespace, workload.name))


# --- Requests from inside the cluster ---------------------------------------------------------

# curl's exit codes (curl(1), "EXIT CODES") for the ways a request gets no HTTP answer at all.
CURL_ERRORS: Mapping[int, str] = {
    6: "could not resolve host",
    7: "connection refused",
    28: "timed out",
    52: "empty reply from server",
    56: "connection reset",
}

# The same request as the curl command below, for workloads that have Python but no curl (the
# Bookinfo images). It prints what curl's -w prints and exits with curl's codes.
PYTHON_CLIENT = r"""
import http.client, json, socket, sys, time, urllib.parse
url, method, timeout, token, headers = sys.argv[1:6]
parts = urllib.parse.urlsplit(url)
path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
start, status, body, found, code = time.monotonic(), 0, b"", {}, 0
connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=float(timeout))
try:
    connection.request(method, path, headers=json.loads(headers))
    response = connection.getresponse()
    status = response.status
    for name, value in response.getheaders():
        found.setdefault(name.lower(), []).append(value)
    body = response.read()
except http.client.RemoteDisconnected:
    code = 52
except ConnectionRefusedError:
    code = 7
except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
    code = 56
except TimeoutError:
    code = 28
except socket.gaierror:
    code = 6
except OSError as error:
    code = 1
    print(error, file=sys.stderr)
if code:
    status, body, found = 0, b"", {}
tail = "\n%s%03d %.6f %s" % (token, status, time.monotonic() - start, json.dumps(found))
sys.stdout.buffer.write(body + tail.encode())
sys.exit(code)
"""


# A client command line: (url, method, headers, timeout, token) -> argv.
ClientCommand = Callable[[str, str, Mapping[str, str] | None, float, str], list[str]]


def client_token() -> str:
    """A marker that cannot occur in a response body by chance: it separates body from -w output."""
    return f"@@istiolab-{secrets.token_hex(8)}@@"


def curl_command(
    url: str, method: str, headers: Mapping[str, str] | None, timeout: float, token: str
) -> list[str]:
    """The curl command line for one request; -w appends status, time and headers after `token`."""
    command = ["curl", "-sS", "--max-time", f"{timeout:g}", "-o", "-"]
    if method == "HEAD":
        command.append("-I")
    elif method != "GET":
        command += ["-X", method]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += ["-w", f"\\n{token}%{{http_code}} %{{time_total}} %{{header_json}}", url]
    return command


def python_command(
    url: str, method: str, headers: Mapping[str, str] | None, timeout: float, token: str
) -> list[str]:
    return [
        "python3",
        "-c",
        PYTHON_CLIENT,
        url,
        method,
        f"{timeout:g}",
        token,
        json.dumps(dict(headers or {})),
    ]


_EXIT_CODE = re.compile(r"command terminated with exit code (\d+)")


def remote_exit_code(returncode: int, stderr: str) -> int | None:
    """The exit code of the command `kubectl exec` ran, or None when kubectl itself failed."""
    if returncode == 0:
        return 0
    match = _EXIT_CODE.search(stderr)
    return int(match.group(1)) if match else None


def _header_map(text: str) -> dict[str, str]:
    """curl's %{header_json}: {"name": ["value", ...]} -> {"name": "value, ..."}."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {
        str(name).lower(): ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        for name, value in found.items()
    }


def parse_client_output(stdout: str, exit_code: int, stderr: str, token: str) -> HttpResult:
    """One HttpResult from the client's output: the body, then `token`, status, seconds, headers.

    A non-zero exit code means no complete HTTP answer: status None, with curl's exit code turned
    into words ("connection reset" for 56, "connection refused" for 7, "timed out" for 28).
    """
    body, found, tail = stdout.rpartition(f"\n{token}")
    if not found:
        body, tail = "", ""
    status_text, _, rest = tail.partition(" ")
    seconds_text, _, headers_text = rest.partition(" ")
    try:
        seconds = float(seconds_text)
    except ValueError:
        seconds = 0.0
    status = int(status_text) if status_text.isdigit() else 0
    if exit_code != 0 or status == 0:
        reason = CURL_ERRORS.get(exit_code)
        if reason is None:
            lines = [line.strip() for line in stderr.splitlines() if line.strip()]
            reason = next(
                (line for line in lines if not _EXIT_CODE.search(line)),
                f"the client exited with code {exit_code}" if exit_code else "no HTTP status",
            )
        return HttpResult(status=None, seconds=seconds, error=reason)
    return HttpResult(status=status, body=body, headers=_header_map(headers_text), seconds=seconds)


def qualify_url(url: str, namespace: str = MESH_NAMESPACE) -> str:
    """Name a bare service host with its namespace, for a client in another namespace.

    "http://reviews:9080/x" -> "http://reviews.default:9080/x"; hosts with a dot, IPs and
    localhost are left alone.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or "." in host or ":" in host or host == "localhost":
        return url
    netloc = f"{host}.{namespace}" + (f":{parts.port}" if parts.port else "")
    if "@" in parts.netloc:
        netloc = parts.netloc.rpartition("@")[0] + "@" + netloc
    return urlunsplit(parts._replace(netloc=netloc))


# --- Metrics and traces -----------------------------------------------------------------------


def parse_prometheus_vector(document: Mapping[str, Any]) -> list[MetricSample]:
    """Samples from a Prometheus /api/v1/query answer whose result is an instant vector."""
    if document.get("status") != "success":
        raise ValueError(
            f"Prometheus answered {document.get('errorType', 'an error')}: "
            f"{document.get('error', document)}"
        )
    data = document.get("data") or {}
    if data.get("resultType") != "vector":
        raise ValueError(f"expected a vector result, got {data.get('resultType')!r}")
    samples = []
    for item in data.get("result") or []:
        labels = dict(item.get("metric") or {})
        name = labels.pop("__name__", "")
        _timestamp, value = item["value"]
        samples.append(MetricSample(name=name, labels=labels, value=float(value)))
    return samples


@dataclass(frozen=True)
class TracingBackend:
    """Which query API the `tracing` Service in istio-system serves."""

    kind: str  # "jaeger" or "zipkin"
    service: str = "tracing"
    port: int = 80


def tracing_backend(service: Mapping[str, Any]) -> TracingBackend:
    """Tell Istio's Jaeger addon from its Zipkin addon by what the `tracing` Service selects.

    Both addons (samples/addons/jaeger.yaml and extras/zipkin.yaml) name their query Service
    `tracing`, port 80: Jaeger's selects app=jaeger, Zipkin's app=zipkin.
    """
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    kind = "zipkin" if selector.get("app") == "zipkin" else "jaeger"
    ports = spec.get("ports") or []
    port = int(ports[0].get("port", 80)) if ports else 80
    return TracingBackend(
        kind=kind, service=service.get("metadata", {}).get("name", "tracing"), port=port
    )


def _tag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def jaeger_to_zipkin(trace: Mapping[str, Any]) -> list[Span]:
    """One trace of Jaeger's query API (/api/traces) as Zipkin v2 spans, oldest first."""
    processes = trace.get("processes") or {}
    spans = []
    for jaeger_span in trace.get("spans") or []:
        tags = {
            tag["key"]: _tag_text(tag.get("value"))
            for tag in jaeger_span.get("tags") or []
            if not str(tag.get("key", "")).startswith("internal.")
        }
        kind = tags.pop("span.kind", "").upper()
        process = processes.get(jaeger_span.get("processID"), {})
        span: dict[str, Any] = {
            "traceId": jaeger_span.get("traceID", trace.get("traceID", "")),
            "id": jaeger_span.get("spanID", ""),
            "name": jaeger_span.get("operationName", ""),
            "timestamp": int(jaeger_span.get("startTime", 0)),
            "duration": int(jaeger_span.get("duration", 0)),
            "localEndpoint": {"serviceName": process.get("serviceName", "")},
            "tags": tags,
        }
        parent = next(
            (
                reference.get("spanID")
                for reference in jaeger_span.get("references") or []
                if reference.get("refType") == "CHILD_OF"
            ),
            None,
        )
        if parent:
            span["parentId"] = parent
        if kind:
            span["kind"] = kind
        spans.append(span)
    return sorted(spans, key=lambda span: span["timestamp"])


def parse_zipkin_traces(document: Any) -> list[list[Span]]:
    """A Zipkin v2 /api/v2/traces answer: a list of traces, each a list of spans."""
    if not isinstance(document, list) or not all(isinstance(trace, list) for trace in document):
        raise ValueError("expected a Zipkin v2 trace list: a JSON list of lists of spans")
    return [sorted(trace, key=lambda span: span.get("timestamp", 0)) for trace in document]


def newest_first(traces: Sequence[list[Span]]) -> list[list[Span]]:
    return sorted(
        traces,
        key=lambda trace: max((s.get("timestamp", 0) for s in trace), default=0),
        reverse=True,
    )


def resolve_service_name(wanted: str, known: Sequence[str]) -> str | None:
    """The tracing service name for `wanted`: itself, or "NAME.NAMESPACE" as Istio names them."""
    if wanted in known:
        return wanted
    matches = [name for name in known if name.startswith(f"{wanted}.")]
    if f"{wanted}.{MESH_NAMESPACE}" in matches:
        return f"{wanted}.{MESH_NAMESPACE}"
    return matches[0] if len(matches) == 1 else None


# --- Proxy status -----------------------------------------------------------------------------

# Columns of `istioctl proxy-status` that are not an xDS type's sync status.
_NOT_STATUS_COLUMNS = {"NAME", "PROXY", "CLUSTER", "ISTIOD", "PILOT", "VERSION", "SUBSCRIBED TYPES"}
_XDS_TYPES = {
    "envoy.config.cluster.v3.Cluster": "CDS",
    "envoy.config.listener.v3.Listener": "LDS",
    "envoy.config.route.v3.RouteConfiguration": "RDS",
    "envoy.config.endpoint.v3.ClusterLoadAssignment": "EDS",
    "envoy.config.core.v3.TypedExtensionConfig": "ECDS",
}


def _is_stale(status: str) -> bool:
    """STALE (sent, not acknowledged), ERROR or NACKED (rejected); SYNCED, NOT SENT, IGNORED and
    UNKNOWN are not waiting for anything."""
    status = status.strip().upper()
    return status.startswith(("STALE", "ERROR")) or "NACK" in status


def _proxy_name(node_id: str) -> str:
    """Istio node IDs look like "sidecar~10.244.0.7~productpage-v1-5d7b.default~default.svc...";
    istioctl prints the "pod.namespace" part."""
    parts = node_id.split("~")
    return parts[2] if len(parts) >= 4 else node_id


def parse_proxy_status_table(text: str) -> dict[str, list[str]]:
    """Each proxy of `istioctl proxy-status`'s table, with its stale xDS types ("RDS STALE").

    The table is tabwriter output: every cell starts at its header's column, and cells may hold
    single spaces ("NOT SENT", "STALE (Never Acknowledged)"), so cells are cut by position.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.split()[0] in {"NAME", "PROXY"}), None)
    if start is None:
        return {}
    header = lines[start]
    columns = [(m.group(0), m.start()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    proxies: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        cells = {}
        for index, (column, begin) in enumerate(columns):
            end = columns[index + 1][1] if index + 1 < len(columns) else len(line)
            cells[column] = line[begin:end].strip()
        name = cells[columns[0][0]]
        proxies[name] = [
            f"{column} {value}"
            for column, value in cells.items()
            if column not in _NOT_STATUS_COLUMNS and _is_stale(value)
        ]
    return proxies


def _json_documents(text: str) -> list[Any]:
    """Every JSON value in `text`, for output that prints one document per control plane."""
    decoder = json.JSONDecoder()
    documents, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return documents
        document, index = decoder.raw_decode(text, index)
        documents.append(document)


def parse_proxy_status_json(text: str) -> dict[str, list[str]] | None:
    """Each proxy of `istioctl proxy-status -o json`, with its stale xDS types.

    Reads the Envoy CSDS ClientConfig form (node.id plus genericXdsConfigs[].configStatus) and
    Istio's sync-status form (proxy plus <type>_sent/<type>_acked nonces), wherever they sit in
    the document. None when the text is not JSON or holds neither form.
    """
    try:
        documents = _json_documents(text)
    except ValueError:
        return None
    proxies: dict[str, list[str]] = {}

    def visit(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                visit(item)
            return
        if not isinstance(value, dict):
            return
        if "genericXdsConfigs" in value and isinstance(value.get("node"), dict):
            stale = []
            for config in value.get("genericXdsConfigs") or []:
                type_url = str(config.get("typeUrl", "")).rpartition("/")[2]
                name = _XDS_TYPES.get(type_url, type_url.rpartition(".")[2] or type_url)
                status = str(config.get("configStatus", ""))
                if str(config.get("clientStatus", "")).endswith("NACKED"):
                    stale.append(f"{name} NACKED")  # the proxy rejected what it was sent
                elif _is_stale(status):
                    stale.append(f"{name} {status}")
            proxies[_proxy_name(str(value["node"].get("id", "")))] = stale
            return
        if "proxy" in value and any(str(key).endswith("_sent") for key in value):
            stale = []
            for key in sorted(value):
                if not str(key).endswith("_sent"):
                    continue
                prefix = str(key)[: -len("_sent")]
                sent, acked = value.get(key) or "", value.get(f"{prefix}_acked") or ""
                if sent and sent != acked:
                    stale.append(f"{prefix} STALE")
            proxies[_proxy_name(str(value["proxy"]))] = stale
            return
        for item in value.values():
            visit(item)

    visit(documents)
    return proxies or None


# --- Running kubectl and istioctl --------------------------------------------------------------


class CommandFailed(IstiolabError):
    """kubectl or istioctl ran and failed for a reason other than an unreachable cluster."""

    def __init__(self, command: Sequence[str], returncode: int, stderr: str, fix: str = "") -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"`{' '.join(self.command)}` failed: {_first_error(stderr)}", fix)

    @property
    def not_found(self) -> bool:
        return "NotFound" in self.stderr or "not found" in self.stderr


# klog lines ("E1125 21:21:19.041498 10349 memcache.go:265] ...") repeat what the last line says.
_KLOG = re.compile(r"^[EIWF]\d{4} \d\d:\d\d:\d\d")


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not _KLOG.match(line)]
    return (meaningful or lines or ["(no error output)"])[-1]


_UNKNOWN_CONTEXT = (
    re.compile(r"context was not found for specified context"),
    re.compile(r'context "[^"]*" does not exist'),
)
_UNREACHABLE = (
    "The connection to the server",
    "Unable to connect to the server",
    "connect: connection refused",
    "no such host",
    "i/o timeout",
    "TLS handshake timeout",
    "context deadline exceeded",
)


def _cluster_fix(context: str) -> str:
    if context.startswith("kind-"):
        cluster = context.removeprefix("kind-")
        return (
            f"start the kind node again (docker start {cluster}-control-plane), or recreate the"
            " cluster: ./scripts/cluster-down.sh && ./scripts/cluster-up.sh"
        )
    return f"check that the cluster answers: kubectl --context {context} cluster-info"


def classify_failure(tool: str, context: str, stderr: str) -> TargetUnavailable | None:
    """The TargetUnavailable for a failure that means the cluster cannot be asked at all."""
    if any(pattern.search(stderr) for pattern in _UNKNOWN_CONTEXT):
        return TargetUnavailable(
            f"{tool} has no context {context!r} in its kubeconfig",
            fix=(
                "create the kind cluster with ./scripts/cluster-up.sh, or point KUBE_CONTEXT at an"
                " existing context (kubectl config get-contexts -o name)"
            ),
        )
    if any(marker in stderr for marker in _UNREACHABLE):
        return TargetUnavailable(
            f"the cluster of context {context!r} does not answer: {_first_error(stderr)}",
            fix=_cluster_fix(context),
        )
    return None


class Runner:
    """Runs one tool (kubectl or istioctl) against one context: fixed arguments, a timeout."""

    def __init__(self, tool: str, binary: str, context: str, timeout: float = KUBECTL_TIMEOUT):
        self.tool = tool
        self.binary = binary
        self.context = context
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--context", self.context, *args]

    def missing(self) -> TargetUnavailable:
        if self.tool == "kubectl":
            fix = (
                "install kubectl (https://kubernetes.io/docs/tasks/tools/) and put it on PATH;"
                " ./scripts/cluster-up.sh --check lists every prerequisite"
            )
        else:
            fix = f"./scripts/cluster-up.sh downloads the pinned {self.tool} into .bin/"
        return TargetUnavailable(f"{self.tool} was not found ({self.binary})", fix=fix)

    def failure(self, args: Sequence[str], returncode: int, stderr: str) -> IstiolabError:
        unavailable = classify_failure(self.tool, self.context, stderr)
        if unavailable is not None:
            return unavailable
        return CommandFailed([self.tool, *args], returncode, stderr)

    def run(
        self, *args: str, input: str | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the tool and return what it did, failed or not; raise only when it could not run."""
        limit = timeout or self.timeout
        try:
            return subprocess.run(
                self.argv(*args),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
            )
        except FileNotFoundError:
            raise self.missing() from None
        except subprocess.TimeoutExpired:
            raise TargetUnavailable(
                f"`{self.tool} {' '.join(args)}` did not finish within {limit:g}s",
                fix=_cluster_fix(self.context),
            ) from None

    def check(self, *args: str, input: str | None = None, timeout: float | None = None) -> str:
        """Run the tool; its stdout, or an error that says what failed."""
        completed = self.run(*args, input=input, timeout=timeout)
        if completed.returncode != 0:
            raise self.failure(args, completed.returncode, completed.stderr)
        return completed.stdout

    def get_json(self, *args: str, timeout: float | None = None) -> Any:
        """`TOOL --context CTX ARGS -o json`, parsed."""
        output = self.check(*args, "-o", "json", timeout=timeout)
        try:
            return json.loads(output)
        except ValueError as error:
            raise CommandFailed([self.tool, *args, "-o", "json"], 0, f"not JSON: {error}") from None


# --- HTTP ---------------------------------------------------------------------------------------


def http_request(
    host: str,
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: str | None = None,
    timeout: float = 10.0,
) -> HttpResult:
    """One HTTP/1.1 exchange; an exchange that got no answer is a result too (status None)."""
    if not path.startswith("/"):
        path = "/" + path
    start = time.monotonic()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(
            method,
            path,
            body=data.encode() if data is not None else None,
            headers=dict(headers or {}),
        )
        response = connection.getresponse()
        body = response.read().decode("utf-8", errors="replace")
        found: dict[str, str] = {}
        for name, value in response.getheaders():
            name = name.lower()
            found[name] = f"{found[name]}, {value}" if name in found else value
        return HttpResult(response.status, body, found, time.monotonic() - start)
    except ConnectionRefusedError:
        error = "connection refused"
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        error = "connection reset"  # includes http.client.RemoteDisconnected
    except TimeoutError:
        error = "timed out"
    except http.client.HTTPException as exc:
        error = f"not an HTTP answer: {exc!r}"
    except OSError as exc:
        error = str(exc) or type(exc).__name__
    finally:
        connection.close()
    return HttpResult(status=None, seconds=time.monotonic() - start, error=error)


def _get_json(port: int, path: str, timeout: float = 15.0) -> tuple[HttpResult, Any]:
    result = http_request("127.0.0.1", port, path, timeout=timeout)
    try:
        document = json.loads(result.body) if result.status == 200 else None
    except ValueError:
        document = None
    return result, document


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def port_forward(
    runner: Runner,
    target: str,
    remote_port: int,
    *,
    namespace: str,
    timeout: float = PORT_FORWARD_TIMEOUT,
) -> Iterator[int]:
    """`kubectl port-forward` to `target` ("svc/prometheus") on a free local port, for a block.

    Yields the local port once it accepts connections; stops kubectl afterwards. If kubectl exits
    first, its error is raised (a TargetUnavailable when the cluster cannot be reached).
    """
    local_port = free_port()
    args = (
        "port-forward",
        "--address",
        "127.0.0.1",
        "-n",
        namespace,
        target,
        f"{local_port}:{remote_port}",
    )
    try:
        process = subprocess.Popen(
            runner.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise runner.missing() from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", local_port), timeout=1.0):
                    break
            except OSError:
                pass
            if process.poll() is not None:
                stderr = process.stderr.read() if process.stderr else ""
                raise runner.failure(args, process.returncode, stderr)
            if time.monotonic() >= deadline:
                raise TargetUnavailable(
                    f"`kubectl port-forward -n {namespace} {target}` did not open port"
                    f" {local_port} within {timeout:g}s",
                    fix=f"kubectl --context {runner.context} -n {namespace} get {target} -o wide",
                )
            # The pause between two probes, cut short if kubectl exits.
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.05)
        yield local_port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


# --- The target -------------------------------------------------------------------------------


def default_context() -> str:
    """$KUBE_CONTEXT, else the kind cluster's context: kind-${KIND_CLUSTER_NAME}."""
    return os.environ.get("KUBE_CONTEXT") or f"kind-{versions.get('KIND_CLUSTER_NAME')}"


def find_istioctl() -> str | None:
    """The pinned istioctl that cluster-up.sh downloads, else one on PATH."""
    pinned = REPO_ROOT / ".bin" / f"istio-{versions.get('ISTIO_VERSION')}" / "bin" / "istioctl"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    return shutil.which("istioctl")


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
        group = _resource_group(resource)
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
            path,
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
                curl_command,
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
            python_command,
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
            curl_command,
            qualify_url(url, MESH_NAMESPACE),
            method,
            headers,
            timeout,
        )

    def _exec_request(
        self,
        namespace: str,
        target: str,
        container: str,
        command: ClientCommand,
        url: str,
        method: str,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> HttpResult:
        token = client_token()
        where = ["exec", "-n", namespace, target, "-c", container]
        argv = [*where, "--", *command(url, method, headers, timeout, token)]
        completed = self.kubectl.run(*argv, timeout=timeout + KUBECTL_TIMEOUT)
        exit_code = remote_exit_code(completed.returncode, completed.stderr)
        if exit_code is None:  # kubectl itself failed: no such pod, container not running, ...
            raise self.kubectl.failure(where, completed.returncode, completed.stderr)
        return parse_client_output(completed.stdout, exit_code, completed.stderr, token)

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
        backend = tracing_backend(self._addon_service("tracing", "jaeger"))
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
            result, document = _get_json(port, f"{prefix}/services")
            if isinstance(document, dict):
                break
        else:
            raise self._unreadable("Jaeger's query API", result)
        known = [str(name) for name in document.get("data") or []]
        if service is None:
            names = [name for name in known if not name.startswith("jaeger")]
        else:
            resolved = resolve_service_name(service, known)
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
            result, answer = _get_json(port, f"{prefix}/traces?{query}")
            if not isinstance(answer, dict):
                raise self._unreadable("Jaeger's query API", result)
            for trace in answer.get("data") or []:
                found.setdefault(str(trace.get("traceID")), jaeger_to_zipkin(trace))
        return newest_first(list(found.values()))[:limit]

    def _zipkin_traces(self, port: int, service: str | None, limit: int) -> list[list[Span]]:
        parameters: dict[str, Any] = {
            "limit": limit,
            "lookback": int(TRACE_LOOKBACK * 1000),
            "endTs": int(time.time() * 1000),
        }
        if service is not None:
            result, known = _get_json(port, "/zipkin/api/v2/services")
            if not isinstance(known, list):
                raise self._unreadable("Zipkin's API", result)
            resolved = resolve_service_name(service.lower(), [str(name) for name in known])
            if resolved is None:
                return []
            parameters["serviceName"] = resolved
        result, document = _get_json(port, f"/zipkin/api/v2/traces?{urlencode(parameters)}")
        try:
            return newest_first(parse_zipkin_traces(document))[:limit]
        except ValueError:
            raise self._unreadable("Zipkin's API", result) from None

    def request_metrics(self) -> list[MetricSample]:
        self._addon_service("prometheus", "prometheus")
        with port_forward(self.kubectl, "svc/prometheus", 9090, namespace=ISTIO_NAMESPACE) as port:
            result, document = _get_json(
                port, "/api/v1/query?" + urlencode({"query": "istio_requests_total"})
            )
        if not isinstance(document, dict):
            raise self._unreadable("Prometheus", result)
        try:
            return parse_prometheus_vector(document)
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
