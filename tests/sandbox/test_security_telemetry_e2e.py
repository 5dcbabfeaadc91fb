"""The sandbox end to end, part two: identities, mTLS, authorization, tracing and metrics.

istio.io's tasks "Mutual TLS Migration", "HTTP Traffic" (authorization) and "Distributed Tracing"
followed on Bookinfo in the sandbox, with the outcomes those pages show. One sandbox serves the
module, in file order (scripts/test.sh runs pytest with --dist loadfile). Its workload
certificates live 30 seconds, so the sandbox renews them every 15 seconds while the tests run:
every test below also checks that rotation never drops a request.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bookinfo_samples import BOOKINFO_GATEWAY
from istiolab.sandbox import api, lifecycle
from istiolab.sandbox.envoy.admin import EnvoyAdmin
from istiolab.targets.base import HttpResult, MetricSample, Span
from istiolab.targets.sandbox import SandboxTarget
from live import HOST
from sandboxes import LabSandbox

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
CERT_TTL_SECONDS = 30
RBAC_DENIED = "RBAC: access denied"
PRODUCTPAGE_ID = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
BOOKINFO_SERVICES = {"productpage", "details", "reviews", "ratings"}


class Sandbox(LabSandbox):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.target = SandboxTarget(self.state_dir)

    def page(self, path: str = "/productpage", **headers: str) -> requests.Response:
        return requests.get(
            f"http://{HOST}:{self.ports.gateway}{path}", headers=headers, timeout=20
        )

    def proxies(self) -> list[dict[str, Any]]:
        port = lifecycle.control_plane_port(self.state_dir)
        assert port is not None
        return api.call(port, "/proxies")

    def admin_of(self, app: str) -> EnvoyAdmin:
        [entry] = [p for p in self.proxies() if (p.get("labels") or {}).get("app") == app]
        return EnvoyAdmin(int(entry["admin_port"]), timeout=5)

    def metrics_text(self) -> str:
        url = lifecycle.status(self.state_dir)["metrics"]
        return requests.get(url, timeout=10).text


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("security-telemetry"))
    # The control plane reads this at start: short-lived certificates, renewed every 15 s.
    with mock.patch.dict(os.environ, {"ISTIOLAB_CERT_TTL": str(CERT_TTL_SECONDS)}):
        try:
            box.up()
            box.istiolab("label", "namespace", "default", "istio-injection=enabled")
            box.istiolab("rollout", "restart", "deployment")
            box.apply(BOOKINFO_GATEWAY, "gateway.yaml")
            yield box
        finally:
            lifecycle.down(box.state_dir)


def serial_of(admin: EnvoyAdmin) -> str:
    """The serial number of the workload certificate the proxy serves with right now."""
    for certificate in admin.certs()["certificates"]:
        for chain in certificate.get("cert_chain") or ():
            return str(chain["serial_number"])
    raise AssertionError("the proxy has no workload certificate")


# --- identities --------------------------------------------------------------------------------


def test_every_sidecar_has_a_certificate_for_its_workload_identity(sandbox: Sandbox) -> None:
    result = sandbox.istiolab("proxy-config", "secret", "deploy/productpage-v1")
    assert PRODUCTPAGE_ID in result.stdout
    assert "default" in result.stdout and "ROOTCA" in result.stdout


def test_certificates_are_renewed_without_dropping_a_request(sandbox: Sandbox) -> None:
    admin = sandbox.admin_of("productpage")
    first = serial_of(admin)
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            statuses[sandbox.page().status_code] += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        deadline = time.monotonic() + CERT_TTL_SECONDS + 10
        while serial_of(admin) == first:
            assert time.monotonic() < deadline, "the certificate was not renewed at half its life"
            time.sleep(0.5)  # poll interval while waiting for the renewal
        time.sleep(2)  # and keep the traffic going across the switch
    finally:
        stop.set()
        worker.join()
    assert statuses[200] > 10
    assert set(statuses) == {200}, statuses


# --- mTLS migration ----------------------------------------------------------------------------

STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"""


# A command for `istiolab exec`: what a client sees of one call to productpage.
CALL = """
import urllib.error, urllib.request
try:
    print(urllib.request.urlopen("http://productpage:9080/health", timeout=10).status)
except urllib.error.URLError as error:  # failed while sending
    print(type(error.reason).__name__)
except ConnectionError as error:  # failed while waiting for the answer
    print(type(error).__name__)
"""


def outside(sandbox: Sandbox) -> HttpResult:
    return sandbox.target.outside_request("http://productpage:9080/productpage")


def test_permissive_by_default_accepts_callers_outside_the_mesh(sandbox: Sandbox) -> None:
    assert outside(sandbox).status == 200
    assert sandbox.page().status_code == 200
    outside_exec = sandbox.istiolab("exec", "--outside-mesh", "--", sys.executable, "-c", CALL)
    assert outside_exec.stdout.strip() == "200"


def test_strict_refuses_plaintext_and_the_mesh_keeps_working(sandbox: Sandbox) -> None:
    sandbox.apply(STRICT, "strict.yaml")
    refused = outside(sandbox)
    assert refused.status is None and "reset" in refused.error

    # The gateway and every sidecar speak mTLS: the whole page still renders.
    page = sandbox.page()
    assert page.status_code == 200 and "Book Details" in page.text and "Reviewer1" in page.text
    # The same with `istiolab exec`: from a pod in the mesh the call works; from outside the
    # mesh the connection is reset, as istio.io's migration task shows (curl's exit code 56).
    inside = sandbox.istiolab("exec", "deploy/ratings-v1", "--", sys.executable, "-c", CALL)
    assert inside.stdout.strip() == "200"
    outside_exec = sandbox.istiolab("exec", "--outside-mesh", "--", sys.executable, "-c", CALL)
    assert outside_exec.stdout.strip() in ("ConnectionResetError", "RemoteDisconnected")


def test_a_destination_rule_disabling_tls_towards_strict_fails(sandbox: Sandbox) -> None:
    disable = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details-plaintext}
spec:
  host: details
  trafficPolicy: {tls: {mode: DISABLE}}
"""
    sandbox.apply(disable, "details-dr.yaml")
    page = sandbox.page()
    assert "Sorry, product details are currently unavailable" in page.text
    sandbox.delete(disable, "details-dr.yaml")
    sandbox.delete(STRICT, "strict.yaml")
    assert outside(sandbox).status == 200


# --- authorization -----------------------------------------------------------------------------


# istio.io's "HTTP Traffic" task, on Bookinfo: deny everything, then allow each hop by identity.
ALLOW_NOTHING = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: default}
spec: {}
"""
PRODUCTPAGE_VIEWER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET]}}]
"""


def viewer(app: str, caller_service_account: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}-viewer, namespace: default}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/default/sa/{caller_service_account}]}}}}]
    to: [{{operation: {{methods: [GET]}}}}]
"""


# productpage copies the caller's User-Agent onto its calls (bookinfo/propagation.py), so a
# policy on reviews can act on it. (Signing in as jason would need POST /login, which the
# productpage-viewer policy above does not allow.)
DENY_REVIEWS_FOR_A_CLIENT = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-reviews-for-old-client, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - when: [{key: "request.headers[user-agent]", values: [old-client/*]}]
"""


def test_deny_all_answers_403_rbac_access_denied(sandbox: Sandbox) -> None:
    sandbox.apply(ALLOW_NOTHING, "allow-nothing.yaml")
    response = sandbox.page()
    assert response.status_code == 403
    assert response.text == RBAC_DENIED


def test_allowing_the_page_alone_leaves_its_backends_denied(sandbox: Sandbox) -> None:
    sandbox.apply(PRODUCTPAGE_VIEWER, "productpage-viewer.yaml")
    page = sandbox.page()
    assert page.status_code == 200
    assert "Error fetching product details" in page.text
    assert "Error fetching product reviews" in page.text


def test_allowing_each_caller_by_identity_restores_the_page_and_nothing_more(
    sandbox: Sandbox,
) -> None:
    sandbox.apply(
        "---".join(
            [
                viewer("details", "bookinfo-productpage"),
                viewer("reviews", "bookinfo-productpage"),
                viewer("ratings", "bookinfo-reviews"),
            ]
        ),
        "viewers.yaml",
    )
    page = sandbox.page()
    assert "Book Details" in page.text and "Reviewer1" in page.text
    # Any other caller is refused: ratings' sidecar has ratings' identity, not productpage's.
    other = sandbox.target.mesh_request("http://reviews:9080/reviews/0", source="ratings-v1")
    assert (other.status, other.body) == (403, RBAC_DENIED)
    # And from outside the mesh there is no identity at all.
    assert sandbox.target.outside_request("http://reviews:9080/reviews/0").status == 403


def test_deny_beats_allow(sandbox: Sandbox) -> None:
    sandbox.apply(DENY_REVIEWS_FOR_A_CLIENT, "deny.yaml")
    # The ALLOW policy still admits productpage's calls; the DENY policy wins for this client.
    page = sandbox.page(**{"user-agent": "old-client/1.0"})
    assert page.status_code == 200 and "Book Details" in page.text
    assert "Error fetching product reviews" in page.text
    assert "Reviewer1" in sandbox.page().text  # every other client is still allowed

    for name in ("deny.yaml", "viewers.yaml", "productpage-viewer.yaml", "allow-nothing.yaml"):
        sandbox.istiolab("delete", "-f", str(sandbox.root / name))
    assert sandbox.page().status_code == 200


# --- tracing -----------------------------------------------------------------------------------

TRACE_ALL = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 100.0
    customTags:
      lab: {literal: {value: tracing}}
      pod: {environment: {name: POD_NAME, defaultValue: unknown}}
"""


def sampled_context() -> dict[str, str]:
    """A B3 context that says "trace this": the gateway continues it rather than starting its
    own (it replaces a client's x-request-id, but keeps its trace headers)."""
    trace_id = f"{random.getrandbits(128):032x}"
    return {"x-b3-traceid": trace_id, "x-b3-spanid": trace_id[16:], "x-b3-sampled": "1"}


# The proxies send their spans at least every second (envoy/bootstrap.py, ZIPKIN_FLUSH): once
# nothing new has arrived for longer than that, every batch is in.
QUIET_S = 2.5


def until_stable(read: Callable[[], Any], timeout: float = 20.0) -> Any:
    """What `read()` returns once it has not changed for QUIET_S seconds (or at `timeout`)."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < QUIET_S and time.monotonic() < deadline:
        time.sleep(0.25)  # poll interval while the proxies flush their spans
        latest = read()
        if latest != value:
            value, since = latest, time.monotonic()
    return value


def spans_of(sandbox: Sandbox, trace_id: str) -> list[Span]:
    """The trace's spans, once every proxy has sent its part."""

    def read() -> list[Span]:
        found = [t for t in sandbox.target.traces(limit=300) if t[0]["traceId"] == trace_id]
        return sorted(found[0], key=lambda span: span["id"]) if found else []

    return until_stable(read)


def services(trace: list[Span]) -> set[str]:
    return {str(s["localEndpoint"]["serviceName"]).split(".")[0] for s in trace}


def test_one_request_is_one_trace_across_the_gateway_and_all_four_services(
    sandbox: Sandbox,
) -> None:
    sandbox.apply(TRACE_ALL, "trace-all.yaml")
    # reviews v1 does not call ratings: trace a page whose reviews came from v2 or v3.
    for _ in range(20):
        context = sampled_context()
        page = sandbox.page(**context)
        if "Reviews served by: reviews-v1" not in page.text:
            break
    assert page.status_code == 200 and "Reviews served by: reviews-v" in page.text

    trace = spans_of(sandbox, context["x-b3-traceid"])
    assert services(trace) == {"istio-ingressgateway", *BOOKINFO_SERVICES}
    # One tree: the gateway's span is the root, every other span has its parent in the trace.
    ids = {span["id"] for span in trace}
    roots = [span for span in trace if span.get("parentId") not in ids]
    assert services(roots) == {"istio-ingressgateway"}
    # The Telemetry's custom tags: a literal, and the proxy's own POD_NAME.
    assert all(span["tags"]["lab"] == "tracing" for span in trace)
    [productpage_server] = [
        s for s in trace if services([s]) == {"productpage"} and s.get("kind") == "SERVER"
    ]
    assert productpage_server["tags"]["pod"].startswith("productpage-v1-")


def without_propagation(deployment: str) -> str:
    manifest = yaml.safe_load(
        (REPO / "manifests/bookinfo/productpage/deployment-v1.yaml").read_text()
    )
    assert manifest["metadata"]["name"] == deployment
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "PROPAGATE_TRACE_HEADERS", "value": "false"}]
    return yaml.safe_dump(manifest)


def test_a_service_that_drops_the_trace_headers_breaks_the_trace_into_pieces(
    sandbox: Sandbox,
) -> None:
    sandbox.apply(without_propagation("productpage-v1"), "productpage-no-propagation.yaml")
    context = sampled_context()
    assert sandbox.page(**context).status_code == 200

    # Only the gateway -> productpage hop belongs to the request's trace: productpage's own
    # calls start traces of their own, so details, reviews and ratings are missing from it.
    trace = spans_of(sandbox, context["x-b3-traceid"])
    assert services(trace) == {"istio-ingressgateway", "productpage"}
    pieces = sandbox.target.traces(service="details", limit=20)
    assert pieces and "istio-ingressgateway" not in services(pieces[0])

    sandbox.apply(
        (REPO / "manifests/bookinfo/productpage/deployment-v1.yaml").read_text(),
        "productpage-propagation.yaml",
    )


def test_at_one_percent_about_one_request_in_a_hundred_is_traced(sandbox: Sandbox) -> None:
    sandbox.apply((REPO / "manifests/istio/telemetry.yaml").read_text(), "telemetry.yaml")
    before = {
        t[0]["traceId"] for t in sandbox.target.traces(service="istio-ingressgateway", limit=1000)
    }
    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(
            pool.map(lambda _: sandbox.page("/api/v1/products").status_code, range(1000))
        )
    assert statuses == {200: 1000}
    after = until_stable(
        lambda: {
            t[0]["traceId"]
            for t in sandbox.target.traces(service="istio-ingressgateway", limit=1000)
        }
    )
    new = after - before
    # Binomial(1000, 1%): 10 expected; 1..25 holds with probability above 0.9999.
    assert 1 <= len(new) <= 25, len(new)


# --- metrics -----------------------------------------------------------------------------------


def requests_total(sandbox: Sandbox, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(sandbox.metrics_text()):
        for sample in family.samples:
            if sample.name == "istio_requests_total" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


def settled(read: Any, expected: float, timeout: float = 10.0) -> float:
    """The value `read()` returns once it reaches `expected` (access logs are flushed about
    every second), or the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    value = read()
    while value < expected and time.monotonic() < deadline:
        time.sleep(0.25)  # poll interval while the proxies flush their access logs
        value = read()
    return value


def test_request_metrics_count_what_the_proxies_saw_with_istios_labels(sandbox: Sandbox) -> None:
    gateway_to_page = {
        "reporter": "source",
        "source_workload": "istio-ingressgateway",
        "destination_workload": "productpage-v1",
        "destination_service": "productpage.default.svc.cluster.local",
        "response_code": "200",
    }
    at_page = {
        "reporter": "destination",
        "source_workload": "istio-ingressgateway",
        "destination_workload": "productpage-v1",
        "source_principal": "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        "connection_security_policy": "mutual_tls",
        "response_code": "200",
    }
    not_found = {
        "reporter": "source",
        "source_workload": "istio-ingressgateway",
        "response_code": "404",
        "response_flags": "NR",
    }
    start = {
        name: requests_total(sandbox, **labels)
        for name, labels in (("page", gateway_to_page), ("inbound", at_page), ("nr", not_found))
    }

    for _ in range(20):
        assert sandbox.page().status_code == 200
    for _ in range(3):
        assert sandbox.page("/no-such-page").status_code == 404

    assert (
        settled(lambda: requests_total(sandbox, **gateway_to_page), start["page"] + 20)
        == start["page"] + 20
    )
    assert (
        settled(lambda: requests_total(sandbox, **at_page), start["inbound"] + 20)
        == start["inbound"] + 20
    )
    assert settled(lambda: requests_total(sandbox, **not_found), start["nr"] + 3) == start["nr"] + 3


def test_a_fault_shows_in_the_metrics_with_its_response_flag(sandbox: Sandbox) -> None:
    abort = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - fault: {abort: {percentage: {value: 100}, httpStatus: 500}}
    route: [{destination: {host: ratings}}]
"""
    labels = {
        "reporter": "source",
        "source_workload": "reviews-v2",
        "destination_service": "ratings.default.svc.cluster.local",
        "response_code": "500",
        "response_flags": "FI",
    }
    before = requests_total(sandbox, **labels)
    sandbox.apply(abort, "ratings-abort.yaml")
    seen_v2 = 0
    for _ in range(30):
        if "reviews-v2" in sandbox.page().text:
            seen_v2 += 1
    sandbox.delete(abort, "ratings-abort.yaml")
    assert seen_v2 > 0
    assert settled(lambda: requests_total(sandbox, **labels), before + seen_v2) == before + seen_v2


def test_request_metrics_through_the_target(sandbox: Sandbox) -> None:
    samples: list[MetricSample] = sandbox.target.request_metrics()
    assert any(s.labels.get("destination_workload") == "ratings-v1" for s in samples)
    assert all(s.name == "istio_requests_total" for s in samples)
