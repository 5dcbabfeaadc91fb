"""`istiolab proxy-config`, `logs` and `analyze`, on a real sandbox and on small config dumps.

The first tests are pure: the table functions over small pieces of Envoy's /config_dump and
/clusters JSON, in the shapes Envoy 1.40 writes them. The rest share one sandbox (tests run in file
order: scripts/test.sh runs pytest with --dist loadfile): Bookinfo without sidecars first, then
with injection, a DestinationRule with subsets v1..v3, a VirtualService sending reviews to v1, and
Istio's bookinfo Gateway. The sandbox's own config dumps are recorded once and fed to the same
functions, and the command's output must be those tables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from istiolab import cli
from istiolab.commands import proxies
from istiolab.errors import IstiolabError
from istiolab.sandbox import api, lifecycle
from istiolab.sandbox.envoy.admin import EnvoyAdmin
from live import HOST
from sandboxes import SandboxPorts

REVIEWS = "reviews.default.svc.cluster.local"
# Istio's default access log format (model.EnvoyTextLogFormat), as a line of it reads.
ACCESS_LOG_LINE = re.compile(
    r'^\[\S+\] "GET /productpage HTTP/1\.1" 200 - via_upstream - "-" \d+ \d+ \d+ \S+ '
    r'"[^"]*" "[^"]*" "[0-9a-f-]+" "[^"]*" "127\.0\.0\.1:\d+" (inbound|outbound)\|9080\|\|'
)


# ============================================================================================
# The tables as pure functions


def listener(port: int, *chains: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"127.0.0.1_{port}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": list(chains),
    }


def hcm(**config: Any) -> dict[str, Any]:
    return {"filters": [{"name": proxies.HCM, "typed_config": config}]}


def test_listener_rows_describe_each_filter_chain_like_istioctl() -> None:
    inbound = listener(
        15006,
        {
            "filter_chain_match": {
                "transport_protocol": "tls",
                "application_protocols": ["istio-peer-exchange", "istio"],
            },
            **hcm(
                route_config={
                    "virtual_hosts": [{"domains": ["*"], "routes": [{"match": {"prefix": "/"}}]}]
                }
            ),
        },
        {
            "filter_chain_match": {"destination_port": 9080},
            "filters": [{"name": proxies.TCP_PROXY, "typed_config": {"cluster": "inbound|9080||"}}],
        },
    )
    outbound = listener(15001, hcm(rds={"route_config_name": "http_proxy"}))
    assert proxies.listener_rows([inbound, outbound]) == [
        ("127.0.0.1", 15001, "ALL", "Route: http_proxy"),
        ("127.0.0.1", 15006, "Trans: tls; App: TCP TLS", "Inline Route: /*"),
        ("127.0.0.1", 15006, "Addr: *:9080", "Cluster: inbound|9080||"),
    ]


def test_route_rows_show_the_virtual_service_and_short_domains() -> None:
    domains = [
        f"{REVIEWS}",
        f"{REVIEWS}:9080",
        f"{REVIEWS}.",
        "reviews",
        "reviews:9080",
        "reviews.default.svc",
        "reviews.default",
        "10.96.0.12",
    ]
    config = {
        "name": "http_proxy",
        "virtual_hosts": [
            {
                "name": f"{REVIEWS}:9080",
                "domains": domains,
                "routes": [
                    {
                        "match": {"prefix": "/", "headers": [{"name": "end-user"}]},
                        "route": {"cluster": f"outbound|9080|v2|{REVIEWS}"},
                        "metadata": {
                            "filter_metadata": {
                                "istio": {
                                    "config": "/apis/networking.istio.io/v1/namespaces/default/"
                                    "virtual-service/reviews"
                                }
                            }
                        },
                    },
                    {"match": {"path": "/login"}, "route": {"cluster": "x"}},
                    {"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}},
                ],
            },
            {"name": "empty", "domains": ["*"], "routes": []},
        ],
    }
    assert proxies.route_rows([{"name": "inbound|9080||", "virtual_hosts": []}, config]) == [
        (
            "http_proxy",
            f"{REVIEWS}:9080",
            "reviews, reviews.default + 1 more...",
            "/*",
            "reviews.default",
        ),
        ("http_proxy", f"{REVIEWS}:9080", "reviews, reviews.default + 1 more...", "/login", ""),
        ("http_proxy", "empty", "*", "/*", "404"),
    ]
    # istioctl puts the route configurations named by a port first, in port order.
    vhost = {"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}}]}
    named = [{"name": n, "virtual_hosts": [vhost]} for n in ("http.8080", "9080", "80")]
    assert [row[0] for row in proxies.route_rows(named)] == ["80", "9080", "http.8080"]
    assert proxies.describe_config({"filter_metadata": {"istio": {"config": "elsewhere"}}}) == (
        "<unknown>"
    )
    assert proxies.describe_match({"safe_regex": {"regex": "^/api.*"}}) == "regex ^/api.*"


def test_cluster_rows_parse_istio_cluster_names() -> None:
    rule = {
        "filter_metadata": {
            "istio": {
                "config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"
            }
        }
    }
    clusters = [
        {"name": f"outbound|9080|v2|{REVIEWS}", "type": "STATIC", "metadata": rule},
        {"name": "inbound|9080||", "type": "STATIC"},
        {"name": f"outbound|9080|v1|{REVIEWS}", "type": "EDS", "metadata": rule},
        {"name": "BlackHoleCluster"},  # STATIC is the zero value: Envoy leaves it out
    ]
    assert proxies.cluster_rows(clusters) == [
        ("", "9080", "-", "inbound", "STATIC", ""),
        ("BlackHoleCluster", "-", "-", "-", "STATIC", ""),
        (REVIEWS, "9080", "v1", "outbound", "EDS", "reviews.default"),
        (REVIEWS, "9080", "v2", "outbound", "STATIC", "reviews.default"),
    ]
    assert proxies.parse_cluster_name("outbound|9080||details.default.svc.cluster.local") == (
        "outbound",
        9080,
        "",
        "details.default.svc.cluster.local",
    )
    assert proxies.parse_cluster_name("agent") is None


def test_endpoint_rows_show_health_and_outlier_ejection() -> None:
    def host(port: int, **health: Any) -> dict[str, Any]:
        address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
        return {"address": address, "health_status": health}

    statuses = {
        "cluster_statuses": [
            {
                "name": f"outbound|9080||{REVIEWS}",
                "host_statuses": [
                    host(20060, eds_health_status="HEALTHY", failed_outlier_check=True),
                    host(20052, eds_health_status="HEALTHY"),
                ],
            },
            {"name": "inbound|9080||", "host_statuses": [host(20043)]},
        ]
    }
    assert proxies.endpoint_rows(statuses) == [
        ("127.0.0.1:20043", "UNKNOWN", "OK", "inbound|9080||"),
        ("127.0.0.1:20052", "HEALTHY", "OK", f"outbound|9080||{REVIEWS}"),
        ("127.0.0.1:20060", "HEALTHY", "FAILED", f"outbound|9080||{REVIEWS}"),
    ]
    header = proxies.format_endpoints(statuses).splitlines()[0]
    assert re.split(r"\s{3,}", header) == ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]


PROXIES = [
    {"name": "istio-ingressgateway", "namespace": "istio-system", "kind": "gateway"},
    {"name": "productpage-v1-6575779f86-dz44n", "namespace": "default", "kind": "pod"},
    {"name": "reviews-v1-55b88d7fcb-m9shg", "namespace": "default", "kind": "pod"},
    {"name": "reviews-v2-5856f47766-h4hdv", "namespace": "default", "kind": "pod"},
]


@pytest.mark.parametrize(
    ("workload", "namespace", "found"),
    [
        ("productpage-v1-6575779f86-dz44n", None, "productpage-v1-6575779f86-dz44n"),
        ("productpage-v1", None, "productpage-v1-6575779f86-dz44n"),
        ("productpage", None, "productpage-v1-6575779f86-dz44n"),
        ("productpage-v1.default", "other", "productpage-v1-6575779f86-dz44n"),
        ("deploy/reviews-v2", None, "reviews-v2-5856f47766-h4hdv"),
        ("istio-ingressgateway", None, "istio-ingressgateway"),
        ("istio-ingressgateway.istio-system", None, "istio-ingressgateway"),
    ],
)
def test_a_workload_is_a_pod_its_prefix_or_the_gateway(
    workload: str, namespace: str | None, found: str
) -> None:
    assert proxies.find_workload(PROXIES, workload, namespace)["name"] == found


def test_a_workload_that_names_several_pods_or_none_is_an_error() -> None:
    with pytest.raises(IstiolabError) as several:
        proxies.find_workload(PROXIES, "reviews", command="istiolab proxy-config routes")
    assert "matches 2 pods in namespace default" in several.value.message
    assert "reviews-v1-55b88d7fcb-m9shg, reviews-v2-5856f47766-h4hdv" in several.value.message
    assert several.value.fix == (
        "name one of them, e.g. istiolab proxy-config routes reviews-v1-55b88d7fcb-m9shg"
    )
    with pytest.raises(IstiolabError, match='no pod in namespace default is named "ratings"'):
        proxies.find_workload(PROXIES, "ratings")
    with pytest.raises(IstiolabError, match="no pod in namespace other"):
        proxies.find_workload(PROXIES, "productpage", "other")


def test_read_log_tails_and_tolerates_a_log_not_written_yet(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    assert proxies.read_log(log) == []
    log.write_text("one\ntwo\nthree\n")
    assert proxies.read_log(log) == ["one", "two", "three"]
    assert proxies.read_log(log, 2) == ["two", "three"]
    assert proxies.read_log(log, 0) == []


# ============================================================================================
# The commands, in process


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def istiolab(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """Run `istiolab ARGS` in this process, with this module's commands registered."""
    modules = tuple(dict.fromkeys((*cli.COMMAND_MODULES, "proxies", "analyze")))
    monkeypatch.setattr(cli, "COMMAND_MODULES", modules)

    def run(*args: str, state_dir: Path | None = None) -> Result:
        if state_dir is not None:
            monkeypatch.setenv("ISTIOLAB_STATE_DIR", str(state_dir))
        capsys.readouterr()
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


V9_ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
"""


def test_analyze_without_a_sandbox_reads_only_the_files(
    istiolab: Callable[..., Result], tmp_path: Path
) -> None:
    (tmp_path / "v9.yaml").write_text(V9_ROUTE)
    result = istiolab("analyze", str(tmp_path / "v9.yaml"), state_dir=tmp_path / "none")
    assert result.err == "The sandbox is not running: analyzing only the files given.\n"
    assert "[IST0101]" in result.out
    assert result.code == 1
    nothing = istiolab("analyze", state_dir=tmp_path / "none")
    assert nothing.code == 1
    assert "the sandbox is not running, and no files were given" in nothing.err


# ============================================================================================
# One sandbox


@dataclass
class Sandbox:
    state_dir: Path
    ports: SandboxPorts = field(default_factory=SandboxPorts)

    @property
    def gateway_port(self) -> int:
        return self.ports.gateway

    def istiolab(self, *args: str) -> str:
        """The real command, in its own process, as a learner runs it."""
        executable = Path(".venv/bin/istiolab")
        result = subprocess.run(
            [str(executable) if executable.exists() else "istiolab", *args],
            env={**os.environ, "ISTIOLAB_STATE_DIR": str(self.state_dir)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def apply(self, text: str, name: str) -> None:
        path = self.state_dir.parent / name
        path.write_text(text)
        self.istiolab("apply", "-f", str(path))

    def proxy(self, prefix: str) -> dict[str, Any]:
        port = lifecycle.control_plane_port(self.state_dir)
        assert port is not None
        return proxies.find_workload(api.call(port, "/proxies"), prefix)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("proxy-commands") / "state")
    try:
        box.ports.up(box.state_dir)
        yield box
    finally:
        lifecycle.down(box.state_dir)


def test_a_pod_without_a_sidecar_has_no_proxy_configuration(
    sandbox: Sandbox, istiolab: Callable[..., Result]
) -> None:
    result = istiolab("proxy-config", "clusters", "productpage-v1", state_dir=sandbox.state_dir)
    assert result.code == 1
    pod = sandbox.proxy("productpage-v1")["name"]
    assert f"{pod} has no sidecar: there is no proxy configuration to show" in result.err
    assert "istiolab label namespace default istio-injection=enabled" in result.err
    assert "istiolab rollout restart deployment" in result.err
    no_proxy = istiolab("logs", "productpage-v1", "-c", "istio-proxy")
    assert no_proxy.code == 1
    assert "has no sidecar" in no_proxy.err
    app = istiolab("logs", "productpage-v1")  # the app's own log is there either way
    assert app.code == 0
    assert app.out.strip()


MESH = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    - uri: {exact: /login}
    - uri: {exact: /logout}
    - uri: {prefix: /api/v1/products}
    route:
    - destination: {host: productpage, port: {number: 9080}}
"""


SECTIONS = {
    "listeners": "ListenersConfigDump",
    "routes": "RoutesConfigDump",
    "clusters": "ClustersConfigDump",
}


@dataclass
class Recorded:
    """What productpage's sidecar and the gateway answered, recorded once."""

    sections: dict[str, dict[str, Any]]  # "productpage.listeners", "gateway.routes", ...
    endpoints: dict[str, Any]


@pytest.fixture(scope="module")
def recorded(sandbox: Sandbox) -> Recorded:
    sandbox.istiolab("label", "namespace", "default", "istio-injection=enabled")
    sandbox.istiolab("rollout", "restart", "deployment")
    sandbox.apply(MESH, "mesh.yaml")
    sections: dict[str, dict[str, Any]] = {}
    for who, prefix in (("productpage", "productpage-v1"), ("gateway", "istio-ingressgateway")):
        dump = EnvoyAdmin(sandbox.proxy(prefix)["admin_port"]).config_dump()
        for what, section_type in SECTIONS.items():
            sections[f"{who}.{what}"] = next(
                c for c in dump["configs"] if c["@type"].endswith("." + section_type)
            )
    endpoints = EnvoyAdmin(sandbox.proxy("productpage-v1")["admin_port"]).clusters_json()
    return Recorded(sections, endpoints)


def lines_matching(table: str, pattern: str) -> list[str]:
    return [line for line in table.splitlines() if re.search(pattern, line)]


def test_clusters_show_the_destination_rule_subsets(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    table = proxies.format_clusters(
        proxies.resources_of(recorded.sections["productpage.clusters"], "clusters")
    )
    for subset in ("v1", "v2", "v3"):
        assert lines_matching(
            table, rf"^{REVIEWS}\s+9080\s+{subset}\s+outbound\s+(EDS|STATIC)\s+reviews\.default$"
        ), table
    assert lines_matching(table, r"^\s+9080\s+-\s+inbound\s+STATIC\s*$"), table
    result = istiolab("proxy-config", "clusters", "productpage-v1", state_dir=sandbox.state_dir)
    assert result.code == 0
    assert result.out == table + "\n"
    only_v1 = istiolab("pc", "clusters", "productpage-v1.default", "--subset", "v1")
    assert [line.split() for line in only_v1.out.splitlines()[1:]] == [
        line.split() for line in lines_matching(table, r"\s+v1\s+")
    ]


def test_routes_show_the_virtual_services(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    table = proxies.format_routes(
        proxies.resources_of(recorded.sections["productpage.routes"], "routes")
    )
    assert table.splitlines()[0].split() == [
        "NAME", "VHOST", "NAME", "DOMAINS", "MATCH", "VIRTUAL", "SERVICE"
    ]  # fmt: skip
    assert lines_matching(
        table, rf"^http_proxy\s+{REVIEWS}:9080\s+reviews, reviews.default\s+/\*\s+reviews.default$"
    ), table
    assert lines_matching(table, r"^inbound\|9080\|\|\s+inbound\|http\|9080\s+\*\s+/\*\s*$"), table
    result = istiolab("proxy-config", "routes", "productpage-v1", state_dir=sandbox.state_dir)
    assert result.out == table + "\n"

    gateway = proxies.format_routes(
        proxies.resources_of(recorded.sections["gateway.routes"], "routes")
    )
    assert lines_matching(gateway, r"^http\.8080\s+\*:8080\s+\*\s+/productpage\s+bookinfo.default$")
    assert lines_matching(gateway, r"^http\.8080\s+\*:8080\s+\*\s+/static\*\s+bookinfo.default$")
    assert istiolab("pc", "routes", "istio-ingressgateway").out == gateway + "\n"


def test_listeners_show_the_proxy_listener_and_the_inbound_one(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    proxy = sandbox.proxy("productpage-v1")
    table = proxies.format_listeners(
        proxies.resources_of(recorded.sections["productpage.listeners"], "listeners")
    )
    assert lines_matching(
        table, rf"^127\.0\.0\.1\s+{proxy['outbound_port']}\s+ALL\s+Route: http_proxy$"
    ), table
    # The inbound listener's two filter chains under PERMISSIVE (no PeerAuthentication yet):
    # mutual TLS for callers that speak Istio's ALPN, plaintext for the rest.
    inbound = rf"^127\.0\.0\.1\s+{proxy['inbound_port']}\s+"
    assert lines_matching(
        table, inbound + r"Trans: tls; App: istio,istio-peer-exchange,\S+\s+Inline Route: /\*$"
    ), table
    assert lines_matching(table, inbound + r"Trans: raw_buffer\s+Inline Route: /\*$"), table
    result = istiolab("proxy-config", "listeners", "productpage-v1", state_dir=sandbox.state_dir)
    assert result.out == table + "\n"
    gateway = istiolab("pc", "listeners", "istio-ingressgateway")
    assert lines_matching(
        gateway.out, rf"^127\.0\.0\.1\s+{sandbox.gateway_port}\s+ALL\s+Route: http\.8080$"
    )


def test_endpoints_are_healthy(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    table = proxies.format_endpoints(recorded.endpoints)
    reviews = lines_matching(table, rf"outbound\|9080\|\|{REVIEWS}$")
    assert len(reviews) == 3, table
    assert all(re.match(r"^127\.0\.0\.1:\d+\s+HEALTHY\s+OK\s+", line) for line in reviews)
    result = istiolab("proxy-config", "endpoints", "productpage-v1", state_dir=sandbox.state_dir)
    assert result.out == table + "\n"
    healthy = istiolab(
        "pc", "endpoints", "productpage-v1", "--cluster", f"outbound|9080|v1|{REVIEWS}"
    )
    assert len(healthy.out.splitlines()) == 2


def test_json_and_yaml_are_the_raw_config_dump_sections(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    listeners = istiolab(
        "pc", "listeners", "productpage-v1", "-o", "json", state_dir=sandbox.state_dir
    )
    section = json.loads(listeners.out)
    assert section["@type"] == "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
    assert section == recorded.sections["productpage.listeners"]
    routes = json.loads(
        istiolab("pc", "routes", "productpage-v1", "--name", "http_proxy", "-o", "json").out
    )
    assert [r["route_config"]["name"] for r in routes["dynamic_route_configs"]] == ["http_proxy"]
    assert routes["static_route_configs"] == []
    bootstrap = istiolab("pc", "bootstrap", "istio-ingressgateway", "-o", "yaml")
    assert "envoy.admin.v3.BootstrapConfigDump" in bootstrap.out
    assert "istio-ingressgateway" in bootstrap.out


def test_log_levels_can_be_read_and_changed(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    changed = istiolab(
        "pc", "log", "productpage-v1", "--level", "router:debug", state_dir=sandbox.state_dir
    )
    assert "  router: debug" in changed.out.splitlines()
    reset = istiolab("pc", "log", "productpage-v1", "--reset")
    assert "  router: warning" in reset.out.splitlines()
    wrong = istiolab("pc", "log", "productpage-v1", "--level", "loud")
    assert wrong.code == 2
    assert "unknown log level 'loud'" in wrong.err


def test_logs_show_the_access_log_of_a_request_through_the_gateway(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    response = requests.get(f"http://{HOST}:{sandbox.gateway_port}/productpage", timeout=20)
    assert response.status_code == 200
    deadline = time.monotonic() + 10  # Envoy writes its access log every few hundred ms
    sidecar = gateway = ""
    while time.monotonic() < deadline:
        sidecar = istiolab("logs", "productpage-v1", "--proxy", state_dir=sandbox.state_dir).out
        gateway = istiolab("logs", "istio-ingressgateway", "--tail", "5").out
        if "/productpage" in sidecar and "/productpage" in gateway:
            break
        time.sleep(0.1)
    inbound = [line for line in sidecar.splitlines() if "inbound|9080||" in line]
    assert inbound and ACCESS_LOG_LINE.match(inbound[-1]), sidecar
    outbound = [line for line in gateway.splitlines() if "/productpage" in line]
    assert outbound and ACCESS_LOG_LINE.match(outbound[-1]), gateway
    assert "outbound|9080||productpage.default.svc.cluster.local" in outbound[-1]
    assert (
        len(istiolab("logs", "productpage-v1", "-c", "istio-proxy", "--tail", "1").out.splitlines())
        == 1
    )
    app = istiolab("logs", "productpage-v1", "-c", "productpage")
    assert '"GET /productpage HTTP/1.1" 200' in app.out
    wrong = istiolab("logs", "productpage-v1", "-c", "ratings")
    assert wrong.code == 2
    assert "choose one of: [productpage, istio-proxy]" in wrong.err


def test_analyze_finds_nothing_in_the_applied_state(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result]
) -> None:
    result = istiolab("analyze", state_dir=sandbox.state_dir)
    assert result.code == 0
    assert result.out == "No validation issues found.\n"
    assert istiolab("analyze", "-A").out == "No validation issues found.\n"


def test_analyze_finds_a_missing_subset_in_a_file_not_applied(
    sandbox: Sandbox, recorded: Recorded, istiolab: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "reviews-v9.yaml"
    path.write_text(V9_ROUTE)
    result = istiolab("analyze", str(path), state_dir=sandbox.state_dir)
    assert result.code == 1
    assert result.err == ""
    assert (
        f"Error [IST0101] (VirtualService default/reviews {path}:8) Referenced host+subset in "
        'destinationrule not found: "reviews+v9"'
    ) in result.out
    # The applied DestinationRule is what the file is checked against: it names v1..v3.
    assert "defines subsets v1, v2, v3 for reviews" in result.out
    assert result.out.count("[IST") == 1  # the applied reviews route is replaced, not reported
