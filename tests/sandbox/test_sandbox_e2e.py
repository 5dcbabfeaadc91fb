"""The sandbox end to end: istio.io's Bookinfo tasks, on real Envoy proxies, through real HTTP.

One sandbox serves the whole module (starting one takes a few seconds); the tests run in file
order (scripts/test.sh runs pytest with --dist loadfile), each building on the state the
previous one left, like a learner following the tasks. Every outcome asserted here is the one
istio.io describes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bookinfo_samples import (
    BOOKINFO_GATEWAY,
    RATINGS_TEST_ABORT,
    RATINGS_TEST_DELAY,
    REVIEWS_SUBSETS,
    REVIEWS_TEST_V2,
    REVIEWS_TIMEOUT,
    destination_rule,
    virtual_service_to,
)
from istiolab.errors import IstiolabError
from istiolab.sandbox import lifecycle
from istiolab.sandbox.envoy import binary, bootstrap, xds_files
from live import HOST
from sandboxes import LabSandbox, free_port

pytestmark = pytest.mark.sandbox

STAR = "glyphicon glyphicon-star"
REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
RATINGS_ERROR = "Ratings service is currently unavailable"


class Sandbox(LabSandbox):
    @property
    def gateway_port(self) -> int:
        return self.ports.gateway

    @property
    def forward_port(self) -> int:
        return self.ports.forward

    def page(self, session: requests.Session | None = None, via_gateway: bool = True) -> str:
        port = self.gateway_port if via_gateway else self.forward_port
        response = (session or requests).get(f"http://{HOST}:{port}/productpage", timeout=20)
        assert response.status_code == 200
        return response.text

    def login(self, user: str = "jason") -> requests.Session:
        session = requests.Session()
        session.post(
            f"http://{HOST}:{self.gateway_port}/login",
            data={"username": user, "passwd": "x"},
            allow_redirects=False,
            timeout=10,
        )
        return session


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("sandbox"))
    box.up()
    try:
        yield box
    finally:
        lifecycle.down(box.state_dir)


def reviews_versions(sandbox: Sandbox, count: int, **kwargs) -> list[str]:
    versions = []
    for _ in range(count):
        html = sandbox.page(**kwargs)
        marker = html.split("Reviews served by: reviews-", 1)[1][:2] if "served by" in html else "?"
        versions.append(marker)
    return versions


# Istio's destination-rule-all.yaml, its reviews document, and ratings with only the v1 subset.
DESTINATION_RULES = REVIEWS_SUBSETS + "---" + destination_rule("ratings", "v1")


def test_stage_00_serves_the_page_with_every_reviews_version(sandbox: Sandbox) -> None:
    seen = set(reviews_versions(sandbox, 30, via_gateway=False))
    assert seen == {"v1", "v2", "v3"}
    assert all(not w["sidecar"] for w in sandbox.status()["workloads"])
    # No Gateway yet: the ingress gateway has no listener, as on a cluster.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{HOST}:{sandbox.gateway_port}/productpage", timeout=5)


def test_without_sidecars_routing_rules_change_nothing(sandbox: Sandbox) -> None:
    sandbox.apply(DESTINATION_RULES + "---" + virtual_service_to("reviews", "v1"), "rules.yaml")
    seen = set(reviews_versions(sandbox, 30, via_gateway=False))
    assert seen == {"v1", "v2", "v3"}  # kube-proxy balances over every pod, whatever Istio says


def test_injection_takes_effect_when_pods_restart(sandbox: Sandbox) -> None:
    sandbox.istiolab("label", "namespace", "default", "istio-injection=enabled")
    assert all(not w["sidecar"] for w in sandbox.status()["workloads"])
    sandbox.istiolab("rollout", "restart", "deployment")
    workloads = sandbox.status()["workloads"]
    assert len(workloads) == 6
    assert all(w["sidecar"] and w["ready"] == "2/2" for w in workloads)


def test_gateway_and_all_v1(sandbox: Sandbox) -> None:
    out = sandbox.apply(BOOKINFO_GATEWAY, "gateway.yaml")
    assert "gateway.networking.istio.io/bookinfo-gateway created" in out
    assert "virtualservice.networking.istio.io/bookinfo created" in out
    html = sandbox.page()
    assert "<title>Simple Bookstore App</title>" in html
    assert set(reviews_versions(sandbox, 20)) == {"v1"}
    assert (
        requests.get(f"http://{HOST}:{sandbox.gateway_port}/health", timeout=5).status_code == 404
    )


def test_jason_sees_v2_after_logging_in(sandbox: Sandbox) -> None:
    sandbox.apply(REVIEWS_TEST_V2, "reviews.yaml")
    jason = sandbox.login("jason")
    for _ in range(5):
        html = sandbox.page(jason)
        assert html.count(STAR) == 9 and "color: black" in html
    assert STAR not in sandbox.page()
    assert STAR not in sandbox.page(sandbox.login("alice"))


@pytest.mark.parametrize(("v3_weight", "low", "high"), [(50, 33, 67), (10, 1, 21)])
def test_weighted_split_is_within_statistical_bounds(
    sandbox: Sandbox, v3_weight: int, low: int, high: int
) -> None:
    sandbox.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {100 - v3_weight}
    - destination: {{host: reviews, subset: v3}}
      weight: {v3_weight}
""",
        "split.yaml",
    )
    # 100 pages; the bounds hold for a correct split with probability > 0.999.
    red = sum("color: red" in sandbox.page() for _ in range(100))
    assert low <= red <= high, f"{red} of 100 pages had red stars, expected {low}..{high}"


@pytest.mark.slow
def test_a_7s_delay_on_ratings_empties_jasons_reviews_after_6s(sandbox: Sandbox) -> None:
    sandbox.apply(REVIEWS_TEST_V2 + "---" + RATINGS_TEST_DELAY, "fault.yaml")
    jason = sandbox.login("jason")
    started = time.monotonic()
    html = sandbox.page(jason)
    elapsed = time.monotonic() - started
    assert REVIEWS_ERROR in html
    assert 5.5 <= elapsed < 8.0
    assert REVIEWS_ERROR not in sandbox.page()  # others never see the delay


def test_an_abort_on_ratings_shows_ratings_unavailable_to_jason(sandbox: Sandbox) -> None:
    sandbox.apply(REVIEWS_TEST_V2 + "---" + RATINGS_TEST_ABORT, "fault.yaml")
    started = time.monotonic()
    html = sandbox.page(sandbox.login("jason"))
    assert html.count(RATINGS_ERROR) == 2
    assert time.monotonic() - started < 2.0
    assert RATINGS_ERROR not in sandbox.page()


@pytest.mark.slow
def test_a_half_second_timeout_on_reviews_fails_after_about_1s(sandbox: Sandbox) -> None:
    sandbox.apply(
        REVIEWS_TIMEOUT
        + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - fault:
      delay: {percentage: {value: 100.0}, fixedDelay: 2s}
    route:
    - destination: {host: ratings, subset: v1}
""",
        "fault.yaml",
    )
    started = time.monotonic()
    html = sandbox.page()
    elapsed = time.monotonic() - started
    assert REVIEWS_ERROR in html
    assert 0.9 <= elapsed < 2.5  # 0.5 s x productpage's two attempts


def test_an_invalid_apply_changes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    before = sandbox.istiolab("get", "vs", "reviews", "-o", "json").stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(virtual_service_to("reviews", "v9"))  # a subset no DestinationRule has
    result = sandbox.istiolab("apply", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert "IST0101" in result.stderr and "v9" in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.istiolab("get", "vs", "reviews", "-o", "json").stdout == before
    assert REVIEWS_ERROR in sandbox.page()  # still the 0.5 s timeout of the previous test


def test_every_generated_envoy_configuration_validates(sandbox: Sandbox, tmp_path: Path) -> None:
    proxies = sorted(p for p in (sandbox.state_dir / "xds").iterdir() if p.is_dir())
    assert len(proxies) == 8  # six sidecars, the gateway, the kube-proxy stand-in
    for proxy in proxies:
        base = json.loads((proxy / "bootstrap.json").read_text())
        files = {path.name: xds_files.read(path) for path in proxy.glob("*.json")}
        config = bootstrap.static_bootstrap(
            base,
            listeners=files["lds.json"]["resources"],
            clusters=files["cds.json"]["resources"],
            route_configs=[
                files[name]["resources"][0] for name in files if name.startswith("rds_")
            ],
        )
        # Validate mode binds nothing, but give it ports of its own anyway.
        config["admin"]["address"]["socket_address"]["port_value"] = free_port()
        path = tmp_path / f"{proxy.name}.json"
        path.write_text(json.dumps(config))
        ok, output = binary.validate(path)
        assert ok, f"{proxy.name}: {output}"
        assert "deprecated" not in output.lower(), f"{proxy.name}: {output}"


def test_a_killed_app_is_restarted(sandbox: Sandbox) -> None:
    processes = json.loads((sandbox.state_dir / "processes" / "processes.json").read_text())
    ratings = next(
        p
        for p in processes["processes"]
        if ".ratings-v1-" in p["name"] and "istio-proxy" not in p["name"]
    )
    os.kill(ratings["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workload = next(w for w in sandbox.status()["workloads"] if "ratings" in w["name"])
        if workload["restarts"] >= 1 and workload["ready"] == "2/2":
            break
        time.sleep(0.2)  # poll interval while the supervisor restarts it
    assert workload["restarts"] >= 1 and workload["ready"] == "2/2"


def _proxy(sandbox: Sandbox, prefix: str) -> dict:
    from istiolab.sandbox import api

    proxies = api.call(lifecycle.control_plane_port(sandbox.state_dir), "/proxies")
    return next(p for p in proxies if p["name"].startswith(prefix))


def _via_sidecar(proxy: dict, url: str, timeout: float = 20) -> requests.Response:
    """A request as that pod's app sends it: through its sidecar, as an HTTP proxy."""
    outbound = f"http://{HOST}:{proxy['outbound_port']}"
    return requests.get(url, proxies={"http": outbound}, timeout=timeout)


def test_a_killed_sidecar_is_restarted(sandbox: Sandbox) -> None:
    processes = json.loads((sandbox.state_dir / "processes" / "processes.json").read_text())
    sidecar = next(
        p
        for p in processes["processes"]
        if ".details-v1-" in p["name"] and "istio-proxy" in p["name"]
    )
    os.kill(sidecar["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workload = next(w for w in sandbox.status()["workloads"] if "details" in w["name"])
        if workload["restarts"] >= 1 and workload["ready"] == "2/2":
            break
        time.sleep(0.2)  # poll interval while the supervisor restarts it
    assert workload["restarts"] >= 1 and workload["ready"] == "2/2"
    assert "Book Details" in sandbox.page()


def test_a_connection_pool_of_one_overflows_with_uo(sandbox: Sandbox) -> None:
    # ratings answers after 2 s (an earlier test's fault) and reviews calls time out after 0.5 s
    # (504): while one is pending, the others overflow the pool of one (503, flag UO).
    sandbox.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
""",
        "pool.yaml",
    )
    productpage = _proxy(sandbox, "productpage-v1")
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(
            pool.map(
                lambda _: _via_sidecar(productpage, "http://reviews:9080/reviews/0").status_code,
                range(8),
            )
        )
    assert codes.count(503) >= 4 and any(code != 503 for code in codes), codes
    log = Path(productpage["access_log"]).read_text()
    assert '" 503 UO ' in log  # Envoy's response flag for upstream overflow


def test_outlier_detection_ejects_a_failing_endpoint(sandbox: Sandbox) -> None:
    sandbox.apply(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: ratings-v-faulty, labels: {app: ratings, version: v-faulty}}
spec:
  replicas: 1
  selector: {matchLabels: {app: ratings, version: v-faulty}}
  template:
    metadata: {labels: {app: ratings, version: v-faulty}}
    spec:
      serviceAccountName: bookinfo-ratings
      containers:
      - name: ratings
        image: istiolab/examples-bookinfo-ratings-v-faulty:0.1.0
        ports: [{containerPort: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
  subsets:
  - {name: v1, labels: {version: v1}}
""",
        "outlier.yaml",
    )
    reviews = _proxy(sandbox, "reviews-v2")
    codes = [_via_sidecar(reviews, "http://ratings:9080/ratings/0").status_code for _ in range(40)]
    # v-faulty answers 503 half of the time; its first 503 ejects it, then only v1 answers.
    first_failure = codes.index(503) if 503 in codes else len(codes)
    assert first_failure < 30, codes
    assert set(codes[first_failure + 1 :]) == {200}, codes


def test_up_after_a_control_plane_crash_resumes(sandbox: Sandbox) -> None:
    before = {w["name"] for w in sandbox.status()["workloads"]}
    info = json.loads((sandbox.state_dir / "controlplane.json").read_text())
    os.kill(info["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lifecycle.control_plane_port(sandbox.state_dir) is not None:
        assert time.monotonic() < deadline, "the killed control plane still looks alive"
        time.sleep(0.05)  # poll interval while the kernel reaps it
    # The mesh keeps serving without its control plane, as proxies do without istiod.
    assert "Book Details" in sandbox.page()
    sandbox.ports.up(sandbox.state_dir)
    after = sandbox.status()["workloads"]
    assert {w["name"] for w in after} == before  # the same pods, adopted, not recreated
    assert all(w["ready"] == "2/2" for w in after if w["name"] in before)
    assert "Book Details" in sandbox.page()


def test_down_leaves_no_process_and_no_port(sandbox: Sandbox) -> None:
    processes = json.loads((sandbox.state_dir / "processes" / "processes.json").read_text())
    pids = [p["pid"] for p in processes["processes"] if p.get("pid")]
    assert pids
    lifecycle.down(sandbox.state_dir)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"process {pid} still runs"
    for port in (sandbox.gateway_port, sandbox.forward_port):
        with socket.socket() as probe, pytest.raises(OSError):
            probe.connect((HOST, port))
    with pytest.raises(IstiolabError, match="not running"):
        lifecycle.status(sandbox.state_dir)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True
