"""The kind target, without a cluster: its parsing, its runner's errors, and its local plumbing.

What runs here:
- the parsing functions against hand-written kubectl/istioctl/addon documents
  (tests/fixtures/kubectl, see its README);
- curl's and the Python client's output, produced by really running them against real HTTP
  servers on loopback;
- the runner's answers when kubectl is missing, the context is unknown or the cluster is
  unreachable (the real kubectl where there is one, else a stub that prints kubectl's message);
- gateway_request against a real loopback server;
- port_forward, traces, request_metrics, mesh_request and wait_for_config against a STUB kubectl /
  istioctl (tests write it: a small Python script, not the real tool). The stub's port-forward
  listens on the requested port only after a delay and serves recorded answers over real HTTP,
  so the waiting logic and the HTTP clients are exercised for real; its `exec` runs the client
  command on this machine.

What only runs live (the e2e workflow, .github/workflows/e2e-kind.yml, with a kind cluster, real
Istio and its addons): the real kubectl/istioctl output formats of the pinned versions, the curl
client pod and its sidecar, plaintext from the `outside` namespace, Jaeger's and Prometheus'
answers, and `istioctl proxy-status` of the pinned Istio. The lab checks run there with
`pytest labs --target kind`.
"""

from __future__ import annotations

import json
import shutil
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from istiolab.errors import IstiolabError
from istiolab.targets import TargetUnavailable
from istiolab.targets.http import http_request
from istiolab.targets.kind import KindTarget
from istiolab.targets.kind.clients import (
    client_token,
    curl_command,
    parse_client_output,
    python_command,
    qualify_url,
    remote_exit_code,
)
from istiolab.targets.kind.layout import CLIENTS_DIR
from istiolab.targets.kind.port_forward import port_forward
from istiolab.targets.kind.proxy_status import parse_proxy_status_json, parse_proxy_status_table
from istiolab.targets.kind.resources import resource_name
from istiolab.targets.kind.runner import CommandFailed, Runner, classify_failure
from istiolab.targets.kind.target import ROLLOUT_TIMEOUT
from istiolab.targets.kind.telemetry import (
    jaeger_to_zipkin,
    newest_first,
    parse_prometheus_vector,
    parse_zipkin_traces,
    resolve_service_name,
    tracing_backend,
)
from istiolab.targets.kind.workloads import parse_workloads, selector_matches
from live import HOST, Reply, Upstream, closed_port

FIXTURES = Path(__file__).parent / "fixtures" / "kubectl"


def recorded(name: str) -> Any:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text


# --- Kinds ------------------------------------------------------------------------------------


def test_kinds_map_to_fully_qualified_resource_names() -> None:
    assert resource_name("VirtualService") == "virtualservices.networking.istio.io"
    assert resource_name("AuthorizationPolicy") == "authorizationpolicies.security.istio.io"
    assert resource_name("Telemetry") == "telemetries.telemetry.istio.io"
    assert resource_name("HTTPRoute") == "httproutes.gateway.networking.k8s.io"
    assert resource_name("Deployment") == "deployments.apps"
    assert resource_name("Service") == "services"
    # "Gateway" is Istio's; the Gateway API's is asked for with its group.
    assert resource_name("Gateway") == "gateways.networking.istio.io"
    assert (
        resource_name("Gateway.gateway.networking.k8s.io") == "gateways.gateway.networking.k8s.io"
    )
    assert resource_name("destinationrules.networking.istio.io") == (
        "destinationrules.networking.istio.io"
    )
    with pytest.raises(ValueError, match="unknown kind 'VirtualServce'"):
        resource_name("VirtualServce")


# --- Workloads --------------------------------------------------------------------------------


def test_workloads_from_recorded_deployments_and_pods() -> None:
    workloads = {
        w.name: w
        for w in parse_workloads(
            recorded("deployments.recorded.json"), recorded("pods.recorded.json")
        )
    }
    assert sorted(workloads) == ["details-v1", "productpage-v1", "reviews-v2"]

    productpage = workloads["productpage-v1"]
    assert (productpage.replicas, productpage.ready) == (2, 1)
    assert productpage.has_sidecar  # an istio-proxy container in each live pod
    # 1 (istio-proxy) + 2 (productpage) + 0; the pod being deleted (7 restarts) is not counted.
    assert productpage.restarts == 3
    assert productpage.service_account == "bookinfo-productpage"
    assert productpage.labels == {"app": "productpage", "version": "v1"}
    assert productpage.namespace == "default"

    reviews = workloads["reviews-v2"]
    assert (
        reviews.has_sidecar
    )  # istio-proxy as a native sidecar: init container, restartPolicy Always
    assert reviews.restarts == 3  # the native sidecar's restarts count, as in kubectl's RESTARTS
    assert (reviews.replicas, reviews.ready) == (1, 1)

    details = workloads["details-v1"]
    assert not details.has_sidecar
    assert (details.replicas, details.ready, details.restarts) == (1, 0, 4)
    assert details.service_account == "default"


def test_a_deployment_without_pods_has_no_sidecar() -> None:
    deployments = recorded("deployments.recorded.json")
    (workload,) = [w for w in parse_workloads(deployments, {"items": []}) if w.name == "reviews-v2"]
    assert not workload.has_sidecar
    assert workload.restarts == 0


def test_label_selectors() -> None:
    labels = {"app": "reviews", "version": "v2"}
    assert selector_matches({"matchLabels": {"app": "reviews"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "ratings"}}, labels)
    expression = {"key": "version", "operator": "In", "values": ["v1", "v2"]}
    assert selector_matches({"matchExpressions": [expression]}, labels)
    assert not selector_matches(
        {"matchExpressions": [{"key": "version", "operator": "NotIn", "values": ["v2"]}]}, labels
    )
    assert selector_matches({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, labels)
    assert not selector_matches(
        {"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, labels
    )


# --- The in-cluster clients' output -----------------------------------------------------------


def test_curl_write_out_is_parsed() -> None:
    token = "@@T@@"
    stdout = (
        '{"id": 0}\n@@T@@200 0.012345 {"content-type":["application/json"],\n'
        '"set-cookie":["a=1","b=2"]\n}'
    )
    result = parse_client_output(stdout, 0, "", token)
    assert result.status == 200
    assert result.body == '{"id": 0}'
    assert result.seconds == pytest.approx(0.012345)
    assert result.headers == {"content-type": "application/json", "set-cookie": "a=1, b=2"}
    assert result.ok


@pytest.mark.parametrize(
    ("exit_code", "error"),
    [(56, "connection reset"), (7, "connection refused"), (28, "timed out")],
)
def test_curl_exit_codes_mean_no_http_answer(exit_code: int, error: str) -> None:
    stdout = "\n@@T@@000 1.000500 {\n}"
    stderr = f"curl: ({exit_code}) something\ncommand terminated with exit code {exit_code}\n"
    result = parse_client_output(stdout, exit_code, stderr, "@@T@@")
    assert result.status is None
    assert result.error == error
    assert result.seconds == pytest.approx(1.0005)
    assert not result.ok


def test_an_unknown_exit_code_keeps_curls_message() -> None:
    stderr = "curl: (35) TLS connect error\ncommand terminated with exit code 35\n"
    result = parse_client_output("", 35, stderr, "@@T@@")
    assert result.status is None
    assert result.error == "curl: (35) TLS connect error"


def test_kubectl_exec_exit_codes() -> None:
    assert remote_exit_code(0, "") == 0
    assert remote_exit_code(56, "command terminated with exit code 56\n") == 56
    # kubectl failed before running anything: not the command's exit code.
    assert (
        remote_exit_code(1, 'Error from server (NotFound): deployments.apps "curl" not found')
        is None
    )


def run_client(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def resetting_server() -> Iterator[int]:
    """A TCP server that reads the request and answers with a reset (as under STRICT mTLS)."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            connection.recv(65536)
            # SO_LINGER on, with a zero timeout: close() sends a reset instead of a FIN.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


CLIENTS = ["curl", "python"]


def client_argv(
    client: str, url: str, headers: dict[str, str], timeout: float, token: str
) -> list[str]:
    """The command the target would run in the pod, run here instead."""
    if client == "curl":
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed here (it runs inside the client pod on kind)")
        return curl_command(url, "GET", headers, timeout, token)
    argv = python_command(url, "GET", headers, timeout, token)
    return [sys.executable, *argv[1:]]


@pytest.mark.parametrize("client", CLIENTS)
def test_client_output_from_a_real_exchange(client: str, upstream: Callable[..., Upstream]) -> None:
    server = upstream(
        reply=Reply(status=503, body="no healthy upstream", content_type="text/plain")
    )
    token = client_token()
    argv = client_argv(client, server.url("/ratings/0?x=1"), {"x-user": "jason"}, 5, token)
    completed = run_client(argv)
    result = parse_client_output(completed.stdout, completed.returncode, completed.stderr, token)
    assert result.status == 503
    assert result.body == "no healthy upstream"
    assert result.headers["content-type"] == "text/plain"
    assert 0 < result.seconds < 5
    (request,) = server.requests
    assert request.path == "/ratings/0?x=1"
    assert request.headers["x-user"] == "jason"


@pytest.mark.parametrize("client", CLIENTS)
def test_client_refused_reset_and_timed_out(
    client: str, upstream: Callable[..., Upstream], resetting_server: int
) -> None:
    cases = {
        f"http://{HOST}:{closed_port()}/": "connection refused",
        f"http://{HOST}:{resetting_server}/": "connection reset",
        upstream(reply=Reply(delay=2)).url("/"): "timed out",
    }
    for url, error in cases.items():
        token = client_token()
        completed = run_client(client_argv(client, url, {}, 0.5, token))
        result = parse_client_output(
            completed.stdout, completed.returncode, completed.stderr, token
        )
        assert (result.status, result.error) == (None, error), (url, completed)


def test_bare_service_names_are_qualified_for_another_namespace() -> None:
    assert qualify_url("http://reviews:9080/reviews/0") == "http://reviews.default:9080/reviews/0"
    assert qualify_url("http://productpage/productpage") == "http://productpage.default/productpage"
    assert qualify_url("http://reviews.default.svc.cluster.local:9080/") == (
        "http://reviews.default.svc.cluster.local:9080/"
    )
    assert qualify_url("http://10.96.0.1:80/") == "http://10.96.0.1:80/"
    assert qualify_url("http://localhost:9080/") == "http://localhost:9080/"


# --- Metrics and traces -----------------------------------------------------------------------


def test_prometheus_vector() -> None:
    samples = parse_prometheus_vector(recorded("prometheus-vector.recorded.json"))
    assert [(s.name, s.value) for s in samples] == [
        ("istio_requests_total", 42.0),
        ("istio_requests_total", 3.0),
    ]
    assert samples[0].labels["destination_workload"] == "reviews-v2"
    assert samples[1].labels["response_flags"] == "UF"
    assert "__name__" not in samples[0].labels


def test_a_prometheus_error_is_not_taken_for_an_empty_answer() -> None:
    with pytest.raises(ValueError, match="bad_data: parse error"):
        parse_prometheus_vector(
            {"status": "error", "errorType": "bad_data", "error": "parse error"}
        )


def test_tracing_backend_is_told_by_the_services_selector() -> None:
    jaeger = tracing_backend(recorded("service-tracing.recorded.json"))
    assert (jaeger.kind, jaeger.service, jaeger.port) == ("jaeger", "tracing", 80)
    zipkin_service = recorded("service-tracing.recorded.json")
    zipkin_service["spec"]["selector"] = {"app": "zipkin"}
    assert tracing_backend(zipkin_service).kind == "zipkin"


def test_jaeger_traces_become_zipkin_v2_spans() -> None:
    (trace,) = recorded("jaeger-traces.recorded.json")["data"]
    spans = jaeger_to_zipkin(trace)
    assert [span["id"] for span in spans] == [
        "a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "b7ad6b7169203331",
    ]
    root, client, server = spans
    assert root == {
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "id": "a3ce929d0e0e4736",
        "name": "productpage.default.svc.cluster.local:9080/productpage",
        "kind": "SERVER",
        "timestamp": 1795600000100000,
        "duration": 48210,
        "localEndpoint": {"serviceName": "productpage.default"},
        "tags": {"http.status_code": "200", "upstream_cluster": "inbound|9080||"},
    }
    assert client["parentId"] == root["id"]
    assert client["kind"] == "CLIENT"
    assert client["tags"]["error"] == "false"  # Zipkin tags are strings
    assert server["parentId"] == client["id"]
    assert server["localEndpoint"] == {"serviceName": "reviews.default"}


def test_zipkin_traces_and_their_order() -> None:
    traces = parse_zipkin_traces(recorded("zipkin-traces.recorded.json"))
    assert [span["id"] for span in traces[0]] == ["05e3ac9a4f6e3b90", "e457b5a2e4d86bd1"]
    with pytest.raises(ValueError, match="list of lists"):
        parse_zipkin_traces({"data": []})
    older = [{"timestamp": 1}]
    newer = [{"timestamp": 5}, {"timestamp": 2}]
    assert newest_first([older, newer]) == [newer, older]


def test_service_names_resolve_to_istios_name_namespace_form() -> None:
    known = ["jaeger", "productpage.default", "reviews.default", "reviews.other"]
    assert resolve_service_name("productpage", known) == "productpage.default"
    assert resolve_service_name("reviews", known) == "reviews.default"
    assert resolve_service_name("reviews.other", known) == "reviews.other"
    assert resolve_service_name("ratings", known) is None


# --- Proxy status -----------------------------------------------------------------------------


def test_proxy_status_table() -> None:
    assert parse_proxy_status_table(recorded("proxy-status.recorded.txt")) == {
        "details-v1-79dfbd6fff-hl2pn.default": [],
        "istio-ingressgateway-6b9f8c7d5-kq2xr.istio-system": [],  # NOT SENT waits for nothing
        "productpage-v1-6d8b9c7f5d-2xkqp.default": ["RDS STALE (Never Acknowledged)"],
        "reviews-v2-7c9f8b6d4f-x2v9l.default": ["CDS STALE"],
    }


def test_proxy_status_table_without_status_columns() -> None:
    assert parse_proxy_status_table(recorded("proxy-status-subscribed.recorded.txt")) == {
        "details-v1-79dfbd6fff-hl2pn.default": [],
        "istio-ingressgateway-6b9f8c7d5-kq2xr.istio-system": [],
    }
    assert parse_proxy_status_table("") == {}


def test_proxy_status_json() -> None:
    assert parse_proxy_status_json(recorded("proxy-status.recorded.txt")) is None
    assert parse_proxy_status_json(json.dumps(recorded("proxy-status.recorded.json"))) == {
        "productpage-v1-6d8b9c7f5d-2xkqp.default": ["RDS STALE"],
        "reviews-v2-7c9f8b6d4f-x2v9l.default": ["LDS NACKED"],
        "details-v1-79dfbd6fff-hl2pn.default": [],
    }
    # Istio's own sync-status form, one document per istiod.
    sync_status = [
        {"proxy": "a.default", "cluster_sent": "n1", "cluster_acked": "n1", "route_sent": "n2"},
        {"proxy": "b.default", "listener_sent": "n3", "listener_acked": "n3"},
    ]
    text = json.dumps(sync_status[:1]) + "\n" + json.dumps(sync_status[1:])
    assert parse_proxy_status_json(text) == {"a.default": ["route STALE"], "b.default": []}
    assert parse_proxy_status_json("[]") is None


# --- The runner's errors ----------------------------------------------------------------------


def write_stub(directory: Path, name: str, body: str) -> Path:
    """An executable Python script named like the tool it stands in for."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_missing_kubectl_is_unavailable_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH at all
    target = KindTarget(context="kind-istiolab")
    with pytest.raises(TargetUnavailable) as raised:
        target.workloads()
    assert "kubectl was not found" in raised.value.message
    assert "install kubectl" in raised.value.fix


UNKNOWN_CONTEXT_STUB = """
import sys
context = sys.argv[sys.argv.index("--context") + 1]
print(f"Error in configuration: context was not found for specified context: {context}",
      file=sys.stderr)
sys.exit(1)
"""


def test_unknown_context_is_unavailable_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_stub(tmp_path, "kubectl", UNKNOWN_CONTEXT_STUB)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetUnavailable) as raised:
        KindTarget(context="kind-nope").resources("VirtualService")
    assert "no context 'kind-nope'" in raised.value.message
    assert "./scripts/cluster-up.sh" in raised.value.fix
    assert "KUBE_CONTEXT" in raised.value.fix


def test_context_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE_CONTEXT", "my-cluster")
    assert KindTarget().context == "my-cluster"
    monkeypatch.delenv("KUBE_CONTEXT")
    assert KindTarget().context == "kind-istiolab"
    assert KindTarget().gateway_port == 8080


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig whose only context, kind-gone, points at a port nothing listens on."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Config
            clusters:
            - name: kind-gone
              cluster: {{server: "https://{HOST}:{closed_port()}"}}
            users:
            - name: kind-gone
              user: {{token: not-a-secret}}
            contexts:
            - name: kind-gone
              context: {{cluster: kind-gone, user: kind-gone}}
            current-context: kind-gone
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def real_kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed; the stub tests above cover its error messages")
    return found


def test_real_kubectl_unknown_context(real_kubectl: str, kubeconfig: Path) -> None:
    with pytest.raises(TargetUnavailable) as raised:
        KindTarget(context="kind-nope", kubectl=real_kubectl).workloads()
    assert "no context 'kind-nope'" in raised.value.message


def test_real_kubectl_unreachable_cluster(real_kubectl: str, kubeconfig: Path) -> None:
    with pytest.raises(TargetUnavailable) as raised:
        KindTarget(context="kind-gone", kubectl=real_kubectl).resources("Service")
    assert "does not answer" in raised.value.message
    assert "was refused" in raised.value.message or "connection refused" in raised.value.message
    assert "docker start gone-control-plane" in raised.value.fix


def test_failure_classification() -> None:
    refused = (
        "The connection to the server 127.0.0.1:6443 was refused"
        " - did you specify the right host or port?"
    )
    unavailable = classify_failure("kubectl", "kind-istiolab", refused)
    assert unavailable is not None
    assert "docker start istiolab-control-plane" in unavailable.fix
    other = classify_failure(
        "kubectl", "prod", "Unable to connect to the server: dial tcp: i/o timeout"
    )
    assert other is not None
    assert other.fix == "check that the cluster answers: kubectl --context prod cluster-info"
    assert (
        classify_failure("kubectl", "kind-istiolab", 'error: context "x" does not exist')
        is not None
    )
    assert (
        classify_failure(
            "kubectl", "kind-istiolab", 'Error from server (NotFound): x "y" not found'
        )
        is None
    )


def test_other_failures_keep_kubectls_message(tmp_path: Path) -> None:
    stub = write_stub(
        tmp_path,
        "kubectl",
        """
        import sys
        print('E1125 21:21:19.041498   10349 memcache.go:265] "Unhandled Error"', file=sys.stderr)
        print('Error from server (NotFound): services "tracing" not found', file=sys.stderr)
        sys.exit(1)
        """,
    )
    runner = Runner("kubectl", str(stub), "kind-istiolab")
    with pytest.raises(CommandFailed) as raised:
        runner.get_json("get", "service", "tracing", "-n", "istio-system")
    assert raised.value.not_found
    assert raised.value.message == (
        "`kubectl get service tracing -n istio-system -o json` failed:"
        ' Error from server (NotFound): services "tracing" not found'
    )


def test_a_hanging_kubectl_is_cut_off(tmp_path: Path) -> None:
    stub = write_stub(tmp_path, "kubectl", "import time\ntime.sleep(30)\n")
    runner = Runner("kubectl", str(stub), "kind-istiolab", timeout=0.5)
    start = time.monotonic()
    with pytest.raises(TargetUnavailable, match=r"did not finish within 0\.5s"):
        runner.check("get", "pods")
    assert time.monotonic() - start < 10


# --- gateway_request over real loopback HTTP --------------------------------------------------


def gateway(port: int) -> KindTarget:
    return KindTarget(context="kind-istiolab", gateway_host=HOST, gateway_port=port)


def test_gateway_request_records_the_exchange(upstream: Callable[..., Upstream]) -> None:
    server = upstream(reply=Reply(status=201, body='{"ok": true}'))
    result = gateway(server.port).gateway_request(
        "/api/v1/products", method="POST", headers={"x-user": "jason"}, data='{"q": 1}'
    )
    assert result.status == 201
    assert result.body == '{"ok": true}'
    assert result.headers["content-type"] == "application/json"
    assert 0 < result.seconds < 5
    (request,) = server.requests
    assert (request.method, request.path, request.body) == ("POST", "/api/v1/products", b'{"q": 1}')
    assert request.headers["x-user"] == "jason"


def test_gateway_request_without_an_answer(upstream: Callable[..., Upstream]) -> None:
    refused = gateway(closed_port()).gateway_request("/productpage")
    assert (refused.status, refused.error) == (None, "connection refused")
    hung_up = gateway(upstream(reply=Reply(hang_up=True)).port).gateway_request("/productpage")
    assert (hung_up.status, hung_up.error) == (None, "connection reset")
    slow = gateway(upstream(reply=Reply(delay=2)).port).gateway_request("/productpage", timeout=0.3)
    assert (slow.status, slow.error) == (None, "timed out")
    assert 0.3 <= slow.seconds < 2


# --- A stub kubectl for port-forward, exec and get --------------------------------------------

STUB_KUBECTL = """
import http.server, json, os, subprocess, sys, time, urllib.parse

config = json.load(open(os.environ["STUB_KUBECTL_CONFIG"]))
args = sys.argv[1:]
if args[:1] == ["--context"]:
    args = args[2:]
with open(config["log"], "a") as log:
    log.write(json.dumps(args) + "\\n")

if args[0] == "port-forward":
    if config.get("port_forward_error"):
        print(config["port_forward_error"], file=sys.stderr)
        sys.exit(1)
    local_port = int(next(a for a in args if ":" in a and a.split(":")[0].isdigit()).split(":")[0])
    time.sleep(config.get("listen_delay", 0.3))  # like kubectl, which needs a moment to listen
    if config.get("never_listen"):
        time.sleep(60)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            with open(config["requests"], "a") as seen:
                seen.write(self.path + "\\n")
            answer = config["routes"].get(path)
            body = open(answer, "rb").read() if answer else b"404 page not found"
            self.send_response(200 if answer else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", local_port), Handler).serve_forever()

if args[0] == "exec":
    command = args[args.index("--") + 1:]
    if command[0] == "python3":
        command[0] = sys.executable
    code = subprocess.run(command).returncode
    if code:
        print(f"command terminated with exit code {code}", file=sys.stderr)
    sys.exit(code)

key = " ".join(args)
answer = config["answers"].get(key)
if answer is None:
    print(f"error: the stub has no answer for: {key}", file=sys.stderr)
    sys.exit(1)
if "file" in answer:
    sys.stdout.write(open(answer["file"]).read())
else:
    sys.stdout.write(answer.get("stdout", ""))
    sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("code", 0))
"""


class StubKubectl:
    """A stand-in for kubectl (a FAKE: there is no cluster here), configured per test."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.directory = directory
        self.path = write_stub(directory / "bin", "kubectl", STUB_KUBECTL)
        self.config_path = directory / "stub.json"
        self.log = directory / "calls.log"
        self.requests_log = directory / "requests.log"
        self.config: dict[str, Any] = {
            "log": str(self.log),
            "requests": str(self.requests_log),
            "answers": {},
            "routes": {},
        }
        monkeypatch.setenv("STUB_KUBECTL_CONFIG", str(self.config_path))
        self.save()

    def save(self) -> None:
        self.config_path.write_text(json.dumps(self.config), encoding="utf-8")

    def answer(
        self, command: str, *, file: str | None = None, document: Any = None, **rest: Any
    ) -> None:
        if file is not None:
            rest["file"] = str(FIXTURES / file)
        if document is not None:
            rest["stdout"] = json.dumps(document)
        self.config["answers"][command] = rest
        self.save()

    def route(self, path: str, fixture: str) -> None:
        self.config["routes"][path] = str(FIXTURES / fixture)
        self.save()

    def set(self, **values: Any) -> None:
        self.config.update(values)
        self.save()

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def requests(self) -> list[str]:
        return self.requests_log.read_text().splitlines() if self.requests_log.exists() else []

    def target(self) -> KindTarget:
        return KindTarget(context="kind-istiolab", kubectl=str(self.path))

    def runner(self) -> Runner:
        return Runner("kubectl", str(self.path), "kind-istiolab")


@pytest.fixture
def stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StubKubectl:
    return StubKubectl(tmp_path, monkeypatch)


def test_port_forward_waits_until_the_port_accepts(stub: StubKubectl) -> None:
    stub.route("/api/v1/query", "prometheus-vector.recorded.json")
    stub.set(listen_delay=0.5)
    start = time.monotonic()
    with port_forward(stub.runner(), "svc/prometheus", 9090, namespace="istio-system") as port:
        assert time.monotonic() - start >= 0.5  # it waited for the stub to listen
        result = http_request(HOST, port, "/api/v1/query?query=up")
        assert result.status == 200
    # Once the block is over, kubectl is stopped and the port is closed again.
    assert http_request(HOST, port, "/").error == "connection refused"
    ((*_, target, ports),) = stub.calls()
    assert target == "svc/prometheus"
    assert ports == f"{port}:9090"


def test_port_forward_reports_kubectls_error(stub: StubKubectl) -> None:
    stub.set(port_forward_error='Error from server (NotFound): services "prometheus" not found')
    forward = port_forward(stub.runner(), "svc/prometheus", 9090, namespace="istio-system")
    with pytest.raises(CommandFailed, match='services "prometheus" not found'), forward:
        pytest.fail("the block must not run")


def test_port_forward_gives_up_after_its_timeout(stub: StubKubectl) -> None:
    stub.set(never_listen=True, listen_delay=0)
    forward = port_forward(stub.runner(), "svc/tracing", 80, namespace="istio-system", timeout=0.5)
    with pytest.raises(TargetUnavailable, match="did not open port"), forward:
        pytest.fail("the block must not run")


def test_request_metrics_through_a_port_forward(stub: StubKubectl) -> None:
    stub.answer(
        "get service prometheus -n istio-system -o json", file="service-prometheus.recorded.json"
    )
    stub.route("/api/v1/query", "prometheus-vector.recorded.json")
    samples = stub.target().request_metrics()
    assert [s.labels["response_code"] for s in samples] == ["200", "503"]
    assert stub.requests() == ["/api/v1/query?query=istio_requests_total"]


def test_missing_addon_is_unavailable_with_a_fix(stub: StubKubectl) -> None:
    stub.answer(
        "get service prometheus -n istio-system -o json",
        stderr='Error from server (NotFound): services "prometheus" not found\n',
        code=1,
    )
    with pytest.raises(TargetUnavailable) as raised:
        stub.target().request_metrics()
    assert "the prometheus addon is not installed" in raised.value.message
    assert "samples/addons/prometheus.yaml" in raised.value.fix


def test_traces_from_jaeger_through_a_port_forward(stub: StubKubectl) -> None:
    stub.answer("get service tracing -n istio-system -o json", file="service-tracing.recorded.json")
    stub.route("/jaeger/api/services", "jaeger-services.recorded.json")
    stub.route("/jaeger/api/traces", "jaeger-traces.recorded.json")
    (trace,) = stub.target().traces(service="productpage")
    assert {span["localEndpoint"]["serviceName"] for span in trace} == {
        "productpage.default",
        "reviews.default",
    }
    services, query = stub.requests()
    assert services == "/jaeger/api/services"
    assert query.startswith("/jaeger/api/traces?service=productpage.default&limit=100&start=")
    (forward,) = [call for call in stub.calls() if call[0] == "port-forward"]
    assert forward[-2] == "svc/tracing"
    assert forward[-1].endswith(":80")


def test_traces_from_zipkin(stub: StubKubectl) -> None:
    service = recorded("service-tracing.recorded.json")
    service["spec"]["selector"] = {"app": "zipkin"}
    stub.answer("get service tracing -n istio-system -o json", document=service)
    stub.route("/zipkin/api/v2/traces", "zipkin-traces.recorded.json")
    (trace,) = stub.target().traces()
    assert trace[0]["kind"] == "SERVER"
    (query,) = stub.requests()
    assert query.startswith("/zipkin/api/v2/traces?limit=100&lookback=3600000&endTs=")


# --- mesh_request and outside_request through the stub's exec --------------------------------


def deployment(name: str, app: str, containers: list[str], ready: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": c} for c in containers]},
            },
        },
        "status": {"readyReplicas": ready},
    }


def pod(app: str, containers: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{app}-1", "namespace": "default", "labels": {"app": app}},
        "spec": {"containers": [{"name": c} for c in containers]},
        "status": {"containerStatuses": []},
    }


def test_mesh_request_from_the_curl_client(
    stub: StubKubectl, upstream: Callable[..., Upstream]
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed here (it runs inside the client pod on kind)")
    stub.answer(
        "get deployments.apps -n default -o json",
        document={"items": [deployment("curl", "curl", ["curl"])]},
    )
    stub.answer(
        "get pods -n default -o json", document={"items": [pod("curl", ["curl", "istio-proxy"])]}
    )
    server = upstream(reply=Reply(body="ratings"))
    target = stub.target()
    first = target.mesh_request(server.url("/ratings/0"), headers={"end-user": "jason"})
    second = target.mesh_request(f"http://{HOST}:{closed_port()}/")
    assert (first.status, first.body) == (200, "ratings")
    assert server.requests[0].headers["end-user"] == "jason"
    assert (second.status, second.error) == (None, "connection refused")
    execs = [call for call in stub.calls() if call[0] == "exec"]
    assert execs[0][:7] == ["exec", "-n", "default", "deployment/curl", "-c", "curl", "--"]
    # The client was found ready with its sidecar once, and not asked about again.
    assert [call[:2] for call in stub.calls() if call[0] == "get"] == [
        ["get", "deployments.apps"],
        ["get", "pods"],
    ]


def test_mesh_request_from_a_bookinfo_workload(
    stub: StubKubectl, upstream: Callable[..., Upstream]
) -> None:
    stub.answer(
        "get deployments.apps -n default -o json",
        document={
            "items": [deployment("productpage-v1", "productpage", ["istio-proxy", "productpage"])]
        },
    )
    server = upstream(reply=Reply(body="details"))
    result = stub.target().mesh_request(server.url("/details/0"), source="productpage")
    assert (result.status, result.body) == (200, "details")
    (exec_call,) = [call for call in stub.calls() if call[0] == "exec"]
    assert exec_call[3:6] == ["deployment/productpage-v1", "-c", "productpage"]
    assert exec_call[7] == "python3"


def test_mesh_request_from_an_unknown_workload(stub: StubKubectl) -> None:
    stub.answer("get deployments.apps -n default -o json", document={"items": []})
    with pytest.raises(IstiolabError, match="no Deployment named 'ratings'"):
        stub.target().mesh_request("http://reviews:9080/", source="ratings")


def test_outside_request_applies_the_client_on_first_use(
    stub: StubKubectl, resetting_server: int
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed here (it runs inside the client pod on kind)")
    manifest = CLIENTS_DIR / "outside.yaml"
    stub.answer("get deployments.apps -n outside -o json", document={"items": []})
    stub.answer("get pods -n outside -o json", document={"items": []})
    stub.answer(f"apply -n outside -f {manifest}", stdout="deployment.apps/curl created\n")
    stub.answer(
        f"rollout status -n outside deployment/curl --timeout={ROLLOUT_TIMEOUT:g}s",
        stdout='deployment "curl" successfully rolled out\n',
    )
    result = stub.target().outside_request(f"http://{HOST}:{resetting_server}/productpage")
    assert (result.status, result.error) == (None, "connection reset")
    commands = [" ".join(call[:2]) for call in stub.calls()]
    assert "apply -n" in commands
    assert "rollout status" in commands


# --- wait_for_config with a stub istioctl -----------------------------------------------------

STUB_ISTIOCTL = """
import json, os, sys
config = json.load(open(os.environ["STUB_ISTIOCTL_CONFIG"]))
state = config["state"]
count = int(open(state).read()) if os.path.exists(state) else 0
open(state, "w").write(str(count + 1))
if "--output" in sys.argv:
    if config.get("json"):
        sys.stdout.write(open(config["json"]).read())
        sys.exit(0)
    print('Error: unknown flag: --output', file=sys.stderr)
    sys.exit(1)
tables = config["tables"]
sys.stdout.write(open(tables[min(count // 2, len(tables) - 1)]).read())
"""


@pytest.fixture
def istioctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., KindTarget]:
    """A KindTarget whose istioctl is a stub (a FAKE) answering from recorded tables."""
    path = write_stub(tmp_path / "bin", "istioctl", STUB_ISTIOCTL)
    config = tmp_path / "istioctl.json"
    monkeypatch.setenv("STUB_ISTIOCTL_CONFIG", str(config))
    monkeypatch.setattr("istiolab.targets.kind.target.POLL_INTERVAL", 0.01)

    def make(tables: list[str], json_file: str | None = None) -> KindTarget:
        files = [str(FIXTURES / table) for table in tables]
        config.write_text(
            json.dumps(
                {
                    "state": str(tmp_path / "count"),
                    "tables": files,
                    "json": str(FIXTURES / json_file) if json_file else None,
                }
            )
        )
        return KindTarget(context="kind-istiolab", istioctl=str(path))

    return make


def test_wait_for_config_returns_once_every_proxy_is_synced(
    istioctl: Callable[..., KindTarget],
) -> None:
    target = istioctl(["proxy-status.recorded.txt", "proxy-status-synced.recorded.txt"])
    target.wait_for_config(timeout=30)
    assert target.proxy_status() == {
        "details-v1-79dfbd6fff-hl2pn.default": [],
        "productpage-v1-6d8b9c7f5d-2xkqp.default": [],
    }


def test_wait_for_config_names_the_stale_proxies(istioctl: Callable[..., KindTarget]) -> None:
    target = istioctl(["proxy-status.recorded.txt"])
    with pytest.raises(TargetUnavailable) as raised:
        target.wait_for_config(timeout=0.2)
    assert raised.value.message.startswith("2 proxies still had stale configuration after 0.2s:")
    assert (
        "productpage-v1-6d8b9c7f5d-2xkqp.default (RDS STALE (Never Acknowledged))"
        in raised.value.message
    )
    assert "reviews-v2-7c9f8b6d4f-x2v9l.default (CDS STALE)" in raised.value.message
    assert "proxy-status" in raised.value.fix


def test_wait_for_config_reads_the_json_form(istioctl: Callable[..., KindTarget]) -> None:
    target = istioctl(["proxy-status-synced.recorded.txt"], json_file="proxy-status.recorded.json")
    with pytest.raises(
        TargetUnavailable, match=r"reviews-v2-7c9f8b6d4f-x2v9l.default \(LDS NACKED\)"
    ):
        target.wait_for_config(timeout=0.2)


def test_missing_istioctl_is_unavailable_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("istiolab.targets.kind.runner.REPO_ROOT", tmp_path)  # no .bin/ there either
    with pytest.raises(TargetUnavailable) as raised:
        KindTarget(context="kind-istiolab").wait_for_config(timeout=1)
    assert "istioctl was not found" in raised.value.message
    assert ".bin/" in raised.value.fix


def test_the_client_manifests_are_where_the_target_looks() -> None:
    for name, namespace_line in (("curl.yaml", None), ("outside.yaml", "namespace: outside")):
        text = (CLIENTS_DIR / name).read_text(encoding="utf-8")
        assert "kind: ServiceAccount" in text
        assert "kind: Deployment" in text
        assert 'command: ["sleep", "infinity"]' in text
        assert "image: curlimages/curl:8.22.0" in text
        if namespace_line:
            assert namespace_line in text
            assert "istio-injection: disabled" in text
        else:
            assert "namespace:" not in text  # -n picks it
