"""SandboxTarget against a real sandbox: the questions a lab check asks, answered by real Envoy.

One sandbox serves the whole module; the tests run in file order (scripts/test.sh runs pytest with
--dist loadfile) and build on each other like a learner's steps: Bookinfo alone, then sidecars,
then routing rules, then the ingress gateway.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bookinfo_samples import BOOKINFO_GATEWAY, REVIEWS_SUBSETS, virtual_service_to
from istiolab.errors import IstiolabError
from istiolab.sandbox import lifecycle
from istiolab.sandbox.envoy import admin as envoy_admin
from istiolab.targets import TargetUnavailable
from istiolab.targets.sandbox import SandboxTarget, owner_deployment, service_name, stale_proxies
from sandboxes import LabSandbox

pytestmark = pytest.mark.sandbox

BOOKINFO = ("details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3")

# Istio's destination-rule-all.yaml and virtual-service-all-v1.yaml, their reviews documents.
REVIEWS_V1 = REVIEWS_SUBSETS + "---" + virtual_service_to("reviews", "v1")


class Sandbox(LabSandbox):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.target = SandboxTarget(self.state_dir)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("sandbox-target"))
    try:
        box.up()
        yield box
    finally:
        lifecycle.down(box.state_dir)


def podname(body: str) -> str:
    return str(json.loads(body)["podname"])


def test_a_sandbox_that_is_not_running_is_unavailable(tmp_path: Path) -> None:
    target = SandboxTarget(tmp_path / "never-started")
    questions = [
        lambda: target.resources("VirtualService"),
        lambda: target.workloads(),
        lambda: target.gateway_request("/productpage"),
        lambda: target.mesh_request("http://reviews:9080/reviews/0"),
        lambda: target.outside_request("http://reviews:9080/reviews/0"),
        lambda: target.wait_for_config(timeout=1),
    ]
    for ask in questions:
        with pytest.raises(TargetUnavailable) as raised:
            ask()
        assert raised.value.message == "the sandbox is not running"
        assert raised.value.fix == "istiolab up"


def test_workloads_before_injection(sandbox: Sandbox) -> None:
    workloads = sandbox.target.workloads()
    assert [w.name for w in workloads] == list(BOOKINFO)
    for workload in workloads:
        app, version = workload.name.rsplit("-", 1)
        assert workload.namespace == "default"
        assert workload.labels == {"app": app, "version": version}
        assert workload.service_account == f"bookinfo-{app}"
        assert (workload.replicas, workload.ready, workload.restarts) == (1, 1, 0)
        assert not workload.has_sidecar
    assert sandbox.target.workloads("no-such-namespace") == []
    sandbox.target.wait_for_config(timeout=10)  # the gateway alone, with no listener yet


def test_resources(sandbox: Sandbox) -> None:
    services = {s["metadata"]["name"] for s in sandbox.target.resources("Service")}
    assert services == {"details", "productpage", "ratings", "reviews"}
    assert sandbox.target.resources("VirtualService") == []
    pods = sandbox.target.resources("Pod", namespace=None)
    assert len(pods) == 6 and all(p["kind"] == "Pod" for p in pods)
    with pytest.raises(TargetUnavailable, match="Endpoints"):
        sandbox.target.resources("Endpoints")


def test_outside_request_reaches_a_service(sandbox: Sandbox) -> None:
    result = sandbox.target.outside_request("http://reviews:9080/reviews/0")
    assert result.status == 200, result
    assert json.loads(result.body)["id"] == "0"
    assert podname(result.body).startswith("reviews-v")
    for url in ("http://ratings.default:9080/ratings/0", "http://details.default.svc:9080/health"):
        assert sandbox.target.outside_request(url).status == 200, url
    unknown = sandbox.target.outside_request("http://nosuchservice:9080/")
    assert unknown.status is None and "could not resolve host" in unknown.error
    wrong_port = sandbox.target.outside_request("http://reviews:9999/reviews/0")
    assert wrong_port.status is None and "connection refused" in wrong_port.error


def test_mesh_request_without_sidecars_goes_straight_to_a_pod(sandbox: Sandbox) -> None:
    for source in ("curl", "productpage-v1"):
        result = sandbox.target.mesh_request("http://reviews:9080/reviews/0", source=source)
        assert result.status == 200, result
    with pytest.raises(IstiolabError, match="no-such-workload"):
        sandbox.target.mesh_request("http://reviews:9080/", source="no-such-workload")


def test_gateway_request_before_a_gateway_is_refused(sandbox: Sandbox) -> None:
    result = sandbox.target.gateway_request("/productpage", timeout=5)
    assert result.status is None
    assert result.error == "connection refused"


def test_workloads_get_sidecars_when_injection_is_on_and_pods_restart(sandbox: Sandbox) -> None:
    sandbox.istiolab("label", "namespace", "default", "istio-injection=enabled")
    assert not any(w.has_sidecar for w in sandbox.target.workloads())
    sandbox.istiolab("rollout", "restart", "deployment")
    workloads = sandbox.target.workloads()
    assert [w.name for w in workloads] == list(BOOKINFO)
    for workload in workloads:
        assert workload.has_sidecar
        assert (workload.replicas, workload.ready) == (1, 1)
        assert set(workload.labels) == {"app", "version"}


def test_mesh_requests_follow_the_routing_rules_outside_requests_do_not(
    sandbox: Sandbox,
) -> None:
    out = sandbox.apply(REVIEWS_V1, "reviews-v1.yaml")
    assert "virtualservice.networking.istio.io/reviews created" in out
    sandbox.target.wait_for_config(timeout=20)
    for source in ("productpage-v1", "ratings", "curl"):
        for _ in range(5):
            result = sandbox.target.mesh_request("http://reviews:9080/reviews/0", source=source)
            assert result.status == 200, (source, result)
            assert podname(result.body).startswith("reviews-v1-"), (source, result.body)
    # Without a sidecar on the caller's side nothing routes: any pod of the Service answers.
    seen = set()
    for _ in range(20):
        result = sandbox.target.outside_request("http://reviews:9080/reviews/0")
        assert result.status == 200, result
        seen.add(podname(result.body).split("-")[1])
    assert len(seen) > 1, seen


def test_mesh_request_to_an_unknown_host_gets_the_sidecars_answer(sandbox: Sandbox) -> None:
    result = sandbox.target.mesh_request("http://nosuchservice:9080/", source="productpage-v1")
    assert result.status is not None and result.status >= 400, result


def test_gateway_request_after_the_bookinfo_gateway(sandbox: Sandbox) -> None:
    sandbox.apply(BOOKINFO_GATEWAY, "bookinfo-gateway.yaml")
    sandbox.target.wait_for_config(timeout=20)
    result = sandbox.target.gateway_request("/productpage")
    assert result.status == 200, result
    assert "<title>Simple Bookstore App</title>" in result.body
    assert sandbox.target.gateway_request("/not-routed").status == 404
    gateways = sandbox.target.resources("Gateway")
    assert [g["metadata"]["name"] for g in gateways] == ["bookinfo-gateway"]


def test_wait_for_config_names_a_proxy_that_lags(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = envoy_admin.EnvoyAdmin.applied_versions

    def lagging(admin: envoy_admin.EnvoyAdmin) -> envoy_admin.AppliedVersions:
        applied = real(admin)
        if admin.proxy.startswith("ratings-v1-"):
            return envoy_admin.AppliedVersions("1", "1", dict.fromkeys(applied.routes, "1"))
        return applied

    monkeypatch.setattr(envoy_admin.EnvoyAdmin, "applied_versions", lagging)
    with pytest.raises(
        TargetUnavailable, match=r"1 of 7 proxies .*ratings-v1-\S+\.default"
    ) as raised:
        sandbox.target.wait_for_config(timeout=0.2)
    assert "ratings-v1-" in raised.value.fix


def test_traces_and_metrics_come_from_the_sandboxs_own_collector(sandbox: Sandbox) -> None:
    status = lifecycle.status(sandbox.state_dir)
    assert sandbox.target.telemetry_url("zipkin") == status["zipkin"]
    assert sandbox.target.telemetry_url("metrics") == status["metrics"]
    # A request that arrives with a sampled B3 context is traced whatever the sampling rate.
    trace_id = f"{random.getrandbits(128):032x}"
    b3 = {"x-b3-traceid": trace_id, "x-b3-spanid": trace_id[:16], "x-b3-sampled": "1"}
    assert sandbox.target.gateway_request("/productpage", headers=b3).status == 200

    deadline = time.monotonic() + 15
    while not any(t[0]["traceId"] == trace_id for t in sandbox.target.traces(limit=50)):
        assert time.monotonic() < deadline, "the trace never reached the collector"
        time.sleep(0.5)  # poll interval while the proxies flush their spans (every second)
    samples = sandbox.target.request_metrics()
    assert all(s.name == "istio_requests_total" for s in samples)
    assert any(s.labels.get("destination_workload") == "productpage-v1" for s in samples)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("reviews", ("default", "reviews")),
        ("reviews.default", ("default", "reviews")),
        ("Reviews.other.svc", ("other", "reviews")),
        ("reviews.default.svc.cluster.local", ("default", "reviews")),
        ("reviews.default.svc.cluster.local.", ("default", "reviews")),
        ("www.example.com", None),
        ("reviews.default.svc.other.domain", None),
    ],
)
def test_service_names_resolve_like_cluster_dns(
    host: str, expected: tuple[str, str] | None
) -> None:
    assert service_name(host, "default") == expected


def test_a_pods_deployment_comes_from_its_owner_else_its_name() -> None:
    owned = {
        "metadata": {
            "name": "reviews-v1-5f7c9d8b6-x2k4p",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "reviews-v1-5f7c9d8b6"}],
        }
    }
    assert owner_deployment(owned) == "reviews-v1"
    labelled = {"metadata": {"name": "a-b-7c9-zz", "labels": {"pod-template-hash": "7c9"}}}
    assert owner_deployment(labelled) == "a-b"
    assert owner_deployment({"metadata": {"name": "ratings-v1-6cf7657bc5-jpqlj"}}) == "ratings-v1"


def test_stale_proxies_are_those_behind_the_newest_version() -> None:
    at = envoy_admin.AppliedVersions
    assert stale_proxies({"a": at("20", "20", {"r": "20"}), "b": at("20", "20")}) == {}
    stale = stale_proxies({"a": at("100", "100"), "b": at("99", "100"), "c": None})
    assert set(stale) == {"b", "c"}
    assert "LDS=99" in stale["b"] and stale["c"] == "admin API not answering"
    assert stale_proxies({"a": at("", "")}) == {"a": "no configuration yet"}
