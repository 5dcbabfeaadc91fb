"""The sandbox's telemetry process: a Zipkin collector and Istio's request metrics.

The first part is pure: what real Envoy 1.40 proxies wrote and sent (tests/fixtures/telemetry,
see its README) turned into Istio's labels, Zipkin's spans, waterfalls and tables. Then the real
process (`python -m istiolab.sandbox.telemetry`) on free loopback ports: spans posted as Envoy
posts them and read back through Zipkin's API, access logs counted into Prometheus' text. Last, a
real Envoy in front of a stand-in app, reporting to that process, end to end; and the sandbox
target and the `istiolab traces` / `istiolab metrics` commands on top of it.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from istiolab import cli
from istiolab.commands import telemetry as commands
from istiolab.errors import IstiolabError
from istiolab.sandbox import api
from istiolab.sandbox.envoy import binary
from istiolab.sandbox.envoy.bootstrap import gateway_node_id, sidecar_node_id
from istiolab.sandbox.model import Gateway, Mesh, Pod, Service, ServicePort, SidecarPorts
from istiolab.sandbox.telemetry import access_log, client, server, workloads, zipkin
from istiolab.sandbox.telemetry.follower import LogFollower
from istiolab.sandbox.telemetry.metrics import (
    DURATION_BUCKETS_MS,
    LABEL_NAMES,
    RequestMetrics,
    request_labels,
)
from istiolab.sandbox.telemetry.workloads import WorkloadIndex
from istiolab.targets import TargetUnavailable
from istiolab.targets.base import MetricSample
from istiolab.targets.sandbox import SandboxTarget
from live import HOST, Reply, Upstream, closed_port, stop

FIXTURES = Path(__file__).parents[1] / "fixtures" / "telemetry"
PRODUCTPAGE = "productpage.default.svc.cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"
GATEWAY_PRINCIPAL = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
PRODUCTPAGE_PRINCIPAL = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
REVIEWS_PRINCIPAL = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
PYTHON = sys.executable


# ============================================================================================
# The recorded mesh: the pods and ports of the recording (tests/fixtures/telemetry/README.md)


def bookinfo_pod(name: str, app: str, version: str, app_port: int, sidecar: SidecarPorts) -> Pod:
    return Pod(
        name=name,
        namespace="default",
        deployment=f"{app}-{version}",
        labels={"app": app, "version": version},
        service_account=f"bookinfo-{app}",
        app_port=app_port,
        container_ports={"http": 9080},
        sidecar=sidecar,
    )


RECORDED_PRODUCTPAGE = bookinfo_pod(
    "productpage-v1-6b7f6d9c8-x7k2p", "productpage", "v1", 38557, SidecarPorts(51655, 43051, 48771)
)
RECORDED_REVIEWS = bookinfo_pod(
    "reviews-v2-5f7c9d8b6-x2k4p", "reviews", "v2", 46613, SidecarPorts(34689, 15001, 33885)
)


def service(name: str) -> Service:
    return Service(name, "default", (ServicePort(9080, "http"),), {"app": name})


RECORDED_MESH = Mesh(
    services=(service("productpage"), service("reviews")),
    pods=(RECORDED_PRODUCTPAGE, RECORDED_REVIEWS),
    gateway=Gateway(port=56283, admin_port=52973),
)


def recorded_lines() -> list[str]:
    return (FIXTURES / "envoy-access-log.recorded.jsonl").read_text().splitlines()


def recorded_entries() -> list[access_log.AccessLogEntry]:
    return [access_log.parse_entry(line) for line in recorded_lines()]


def recorded_posts() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "envoy-span-posts.recorded.json").read_text())


def recorded_spans() -> list[dict[str, Any]]:
    return [span for post in recorded_posts() for span in json.loads(post["body"])]


def recorded_trace(root_name: str) -> list[dict[str, Any]]:
    """The recorded trace whose root span has this name, its spans normalised."""
    spans = [zipkin.normalize_span(span) for span in recorded_spans()]
    [root] = [s for s in spans if "parentId" not in s and s.get("name") == root_name]
    return [span for span in spans if span["traceId"] == root["traceId"]]


RECORDED_END_MS = max(span["timestamp"] for span in recorded_spans()) // 1000 + 1000
INDEX = WorkloadIndex.from_document(workloads.workloads_document(RECORDED_MESH))


def entry_for(path: str, reporter: str, **where: object) -> access_log.AccessLogEntry:
    for line in recorded_lines():
        fields = json.loads(line)
        if (fields["path"], fields["reporter"]) == (path, reporter) and all(
            fields.get(key) == value for key, value in where.items()
        ):
            return access_log.parse_entry(line)
    raise AssertionError(f"no recorded {reporter} line for {path}")


# ============================================================================================
# The access log: its Envoy configuration, and reading Envoy 1.40's lines


def test_the_access_log_writes_reporter_and_node_id_as_literals() -> None:
    logger = access_log.envoy_access_log(
        "/logs/reviews.jsonl", reporter="destination", proxy_id="sidecar~x"
    )
    config = logger["typed_config"]
    assert logger["name"] == "envoy.access_loggers.file"
    assert config["path"] == "/logs/reviews.jsonl"
    fields = config["log_format"]["json_format"]
    assert fields["reporter"] == "destination"
    assert fields["proxy_id"] == "sidecar~x"
    assert fields["upstream_cluster"] == "%UPSTREAM_CLUSTER_RAW%"
    assert fields["peer_metadata_id"] == "%REQ(X-ENVOY-PEER-METADATA-ID)%"
    with pytest.raises(ValueError, match="reporter must be one of"):
        access_log.envoy_access_log("/x", reporter="client", proxy_id="sidecar~x")


def test_envoy_writes_numbers_as_numbers_and_absent_values_as_null() -> None:
    page = json.loads(recorded_lines()[0])
    assert isinstance(page["response_code"], int) and isinstance(page["duration"], int)
    assert isinstance(page["bytes_sent"], int)
    assert page["downstream_peer_uri_san"] is None
    assert page["response_flags"] == "-"

    uo = entry_for("/uo", "source")
    assert (uo.response_code, uo.response_flags, uo.upstream_host) == (503, "UO", None)
    assert uo.upstream_cluster == f"outbound|9080|uo|{REVIEWS}"
    assert uo.peer_metadata_id == sidecar_node_id(RECORDED_PRODUCTPAGE)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"response_code": 200}', "no reporter or proxy_id"),
        ('{"reporter": "client", "proxy_id": "x"}', "no reporter or proxy_id"),
    ],
)
def test_a_line_that_is_not_an_access_log_entry_is_refused(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        access_log.parse_entry(line)


# ============================================================================================
# Istio's labels, from the recorded lines


def test_the_gateway_reports_its_call_to_productpage_as_source() -> None:
    labels = request_labels(entry_for("/productpage", "source"), INDEX)

    assert labels == {
        "reporter": "source",
        "source_workload": "istio-ingressgateway",
        "source_canonical_service": "istio-ingressgateway",
        "source_canonical_revision": "latest",
        "source_workload_namespace": "istio-system",
        "source_principal": GATEWAY_PRINCIPAL,
        "source_app": "istio-ingressgateway",
        "source_version": "unknown",
        "source_cluster": "Kubernetes",
        "destination_workload": "productpage-v1",
        "destination_workload_namespace": "default",
        "destination_principal": PRODUCTPAGE_PRINCIPAL,
        "destination_app": "productpage",
        "destination_version": "v1",
        "destination_service": PRODUCTPAGE,
        "destination_canonical_service": "productpage",
        "destination_canonical_revision": "v1",
        "destination_service_name": "productpage",
        "destination_service_namespace": "default",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "unknown",  # the client side cannot tell
    }
    assert tuple(labels) == LABEL_NAMES


def test_productpage_reports_the_same_request_as_destination_over_mutual_tls() -> None:
    labels = request_labels(entry_for("/productpage", "destination"), INDEX)

    assert labels["reporter"] == "destination"
    assert labels["source_workload"] == "istio-ingressgateway"
    assert labels["source_workload_namespace"] == "istio-system"
    assert labels["source_principal"] == GATEWAY_PRINCIPAL
    assert labels["destination_workload"] == "productpage-v1"
    assert labels["destination_principal"] == PRODUCTPAGE_PRINCIPAL
    # The Host header was the gateway's address: the workload's own Service is named instead.
    assert labels["destination_service"] == PRODUCTPAGE
    assert labels["connection_security_policy"] == "mutual_tls"


def test_a_request_with_no_route_counts_with_its_flag_and_the_host_it_asked_for() -> None:
    labels = request_labels(entry_for("/no-such-page", "source"), INDEX)

    assert (labels["response_code"], labels["response_flags"]) == ("404", "NR")
    assert labels["source_workload"] == "istio-ingressgateway"
    assert labels["destination_workload"] == "unknown"
    assert labels["destination_service"] == "127.0.0.1:56283"  # Istio's Host header fallback
    assert labels["destination_service_namespace"] == "unknown"
    assert labels["destination_principal"] == "unknown"


@pytest.mark.parametrize("path", ["/uf", "/uo"])
def test_a_503_without_an_upstream_names_the_service_from_the_cluster(path: str) -> None:
    labels = request_labels(entry_for(path, "source"), INDEX)

    assert (labels["response_code"], labels["response_flags"]) == ("503", path[1:].upper())
    assert labels["source_workload"] == "productpage-v1"
    assert labels["source_principal"] == "unknown"  # no TLS connection was made
    assert labels["destination_service"] == REVIEWS
    assert labels["destination_service_name"] == "reviews"
    assert labels["destination_service_namespace"] == "default"
    # UF: a host was picked, but it is no pod's address; UO: no host at all.
    assert labels["destination_workload"] == "unknown"
    assert labels["destination_canonical_revision"] == "latest"


def test_an_rbac_denial_is_a_403_on_both_sides() -> None:
    client_side = request_labels(entry_for("/deny", "source"), INDEX)
    server_side = request_labels(entry_for("/deny", "destination"), INDEX)

    assert client_side["destination_workload"] == "reviews-v2"
    assert client_side["destination_principal"] == REVIEWS_PRINCIPAL
    for labels in (client_side, server_side):
        assert (labels["response_code"], labels["response_flags"]) == ("403", "-")
    assert server_side["source_workload"] == "productpage-v1"
    assert server_side["source_principal"] == PRODUCTPAGE_PRINCIPAL
    assert server_side["connection_security_policy"] == "mutual_tls"


def test_a_plaintext_caller_from_outside_the_mesh_is_unknown() -> None:
    [plain] = [
        e for e in recorded_entries() if e.reporter == "destination" and e.peer_metadata_id is None
    ]
    labels = request_labels(plain, INDEX)

    assert {labels[f"source_{name}"] for name in ("workload", "app", "version", "principal")} == {
        "unknown"
    }
    assert labels["source_workload_namespace"] == "unknown"
    assert labels["source_canonical_revision"] == "latest"
    assert labels["destination_workload"] == "reviews-v2"
    assert labels["destination_service"] == REVIEWS  # from the Host header, reviews:9080
    assert labels["connection_security_policy"] == "none"
    assert labels["destination_principal"] == "unknown"


def test_grpc_requests_carry_their_protocol_and_status() -> None:
    entry = access_log.parse_entry(
        json.dumps(
            {
                **json.loads(recorded_lines()[0]),
                "content_type": "application/grpc",
                "grpc_status": "14",
            }
        )
    )
    labels = request_labels(entry, INDEX)
    assert (labels["request_protocol"], labels["grpc_response_status"]) == ("grpc", "14")


# ============================================================================================
# The workloads file


def test_the_workloads_file_names_every_pod_and_the_gateway(tmp_path: Path) -> None:
    unlabelled = Pod(
        name="curl-5b7c-abcde",
        namespace="default",
        deployment="curl",
        labels={"service.istio.io/canonical-name": "client"},
        service_account="curl",
        app_port=19999,
    )
    mesh = Mesh(
        services=RECORDED_MESH.services,
        pods=(*RECORDED_MESH.pods, unlabelled),
        gateway=RECORDED_MESH.gateway,
    )
    path = tmp_path / "telemetry" / "workloads.json"

    workloads.write_workloads(path, mesh)

    document = json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["workloads.json"]  # no temporary left
    by_name = {entry["workload"]: entry for entry in document["workloads"]}
    assert by_name["reviews-v2"] == {
        "workload": "reviews-v2",
        "namespace": "default",
        "pod": "reviews-v2-5f7c9d8b6-x2k4p",
        "app": "reviews",
        "version": "v2",
        "principal": REVIEWS_PRINCIPAL,
        "canonical_service": "reviews",
        "canonical_revision": "v2",
        "proxy_id": sidecar_node_id(RECORDED_REVIEWS),
        "addresses": ["127.0.0.1:34689", "127.0.0.1:46613"],
        "services": [{"fqdn": REVIEWS, "name": "reviews", "namespace": "default"}],
    }
    assert by_name["curl"]["principal"] is None  # no sidecar: no certificate
    assert by_name["curl"]["proxy_id"] is None
    assert (by_name["curl"]["app"], by_name["curl"]["canonical_service"]) == ("unknown", "client")
    assert by_name["curl"]["canonical_revision"] == "latest"
    gateway = by_name["istio-ingressgateway"]
    assert gateway["proxy_id"] == gateway_node_id(mesh.gateway)
    assert gateway["principal"] == GATEWAY_PRINCIPAL
    assert {s["fqdn"] for s in document["services"]} == {PRODUCTPAGE, REVIEWS}


def test_an_updated_index_still_knows_pods_that_are_gone() -> None:
    later = WorkloadIndex.from_document(
        workloads.workloads_document(
            Mesh(RECORDED_MESH.services, (RECORDED_PRODUCTPAGE,), RECORDED_MESH.gateway)
        )
    )
    merged = WorkloadIndex().merged(INDEX).merged(later)
    reviews = merged.proxy(sidecar_node_id(RECORDED_REVIEWS))
    assert reviews is not None and reviews.workload == "reviews-v2"
    assert merged.endpoint("127.0.0.1:34689") == reviews


# ============================================================================================
# Counting: RequestMetrics and its Prometheus text


def recorded_metrics() -> RequestMetrics:
    metrics = RequestMetrics()
    for entry in recorded_entries():
        metrics.record(entry, INDEX)
    return metrics


def parsed(text: bytes | str) -> dict[str, Any]:
    text = text.decode() if isinstance(text, bytes) else text
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_the_counts_parse_as_prometheus_text_with_istios_buckets() -> None:
    metrics = recorded_metrics()
    families = parsed(metrics.exposition())

    requests = families["istio_requests"]
    assert requests.type == "counter"
    assert sum(s.value for s in requests.samples) == len(recorded_lines())
    duration = families["istio_request_duration_milliseconds"]
    assert duration.type == "histogram"
    bounds = [
        float(s.labels["le"])
        for s in duration.samples
        if s.name.endswith("_bucket")
        and s.labels["reporter"] == "destination"
        and s.labels["source_workload"] == "unknown"
    ]
    assert bounds == [*DURATION_BUCKETS_MS, float("inf")]
    assert {"istio_request_bytes", "istio_response_bytes"} <= set(families)
    # The same request, counted twice: once by each side.
    page = [
        s
        for s in requests.samples
        if s.labels["destination_workload"] == "productpage-v1"
        and s.labels["source_workload"] == "istio-ingressgateway"
    ]
    assert sorted(s.labels["reporter"] for s in page) == ["destination", "source"]


# ============================================================================================
# Following the log files


def test_the_follower_reads_appended_complete_lines_once(tmp_path: Path) -> None:
    seen: list[tuple[str, bytes]] = []
    follower = LogFollower(tmp_path, lambda name, line: seen.append((name, line)))
    log = tmp_path / "a.jsonl"
    (tmp_path / "ignored.log").write_text("not followed\n")

    assert follower.poll() == 0
    log.write_bytes(b"one\ntw")
    assert follower.poll() == 1
    with log.open("ab") as file:
        file.write(b"o\nthree\n")
    (tmp_path / "b.jsonl").write_text("first of b\n")
    assert follower.poll() == 3
    assert follower.poll() == 0
    assert seen == [
        ("a.jsonl", b"one"),
        ("a.jsonl", b"two"),
        ("a.jsonl", b"three"),
        ("b.jsonl", b"first of b"),
    ]


def test_a_recreated_or_truncated_log_is_read_again_from_its_start(tmp_path: Path) -> None:
    seen: list[bytes] = []
    follower = LogFollower(tmp_path, lambda name, line: seen.append(line))
    log = tmp_path / "pod.jsonl"
    log.write_text("before restart 1\nbefore restart 2\n")
    follower.poll()

    replacement = tmp_path / "new.tmp"
    replacement.write_text("after restart, a longer first line than before\n")
    os.replace(replacement, log)  # a new file (another inode) under the same name
    follower.poll()
    log.write_text("cut\n")  # the same file, truncated
    follower.poll()
    log.write_text("rewritten with the same size and more!!\n")  # truncated, then grown past
    follower.poll()

    assert seen == [
        b"before restart 1",
        b"before restart 2",
        b"after restart, a longer first line than before",
        b"cut",
        b"rewritten with the same size and more!!",
    ]
    assert follower.restarts == 3


# ============================================================================================
# Zipkin's rules, on Envoy's spans


def test_spans_are_normalised_as_zipkin_stores_them() -> None:
    span = zipkin.normalize_span(
        {
            "traceId": "ABC",
            "id": "1",
            "parentId": "1",
            "kind": "client",
            "name": "GET /X",
            "timestamp": 1.5e15,
            "duration": 0,
            "localEndpoint": {"serviceName": "Reviews.Default"},
            "tags": {"http.status_code": 200, "error": True},
        }
    )
    assert span == {
        "traceId": "0000000000000abc",
        "id": "0000000000000001",
        "kind": "CLIENT",
        "name": "get /x",
        "timestamp": 1500000000000000,
        "localEndpoint": {"serviceName": "reviews.default"},
        "tags": {"http.status_code": "200", "error": "true"},
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"id": "1"}, "span 0: traceId must be 1 to 32 hex digits"),
        ({"traceId": "1", "id": "xyz"}, "span 0: id must be 1 to 16 hex digits"),
        ({"traceId": "1", "id": "1", "kind": "PEER"}, "kind must be one of"),
        ({"traceId": "1", "id": "1", "duration": -1}, "duration must be a positive number"),
        ("span", "expected a JSON object, got a JSON string"),
        ({"traceId": "1", "id": "1", "annotations": [{"value": "cs"}]}, "an annotation needs"),
    ],
)
def test_spans_zipkin_would_refuse_are_refused(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        zipkin.normalize_span(raw)


def test_a_span_reported_twice_is_kept_once_with_both_reports_tags() -> None:
    first = {"traceId": "1", "id": "2", "tags": {"a": "1"}, "timestamp": 10}
    second = {"traceId": "1", "id": "2", "tags": {"b": "2"}, "duration": 5}

    assert zipkin.merge_spans(first, second) == {
        "traceId": "1",
        "id": "2",
        "tags": {"a": "1", "b": "2"},
        "timestamp": 10,
        "duration": 5,
    }


def test_dependencies_link_each_caller_to_its_callee() -> None:
    spans = [zipkin.normalize_span(span) for span in recorded_spans()]
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(span["traceId"], []).append(span)

    links = zipkin.dependency_links(traces.values())

    assert links == [
        {
            "parent": "istio-ingressgateway.istio-system",
            "child": "productpage.default",
            "callCount": 1,
            "errorCount": 0,
        },
        {
            "parent": "productpage.default",
            "child": "reviews.default",
            "callCount": 2,  # the page's call and the RBAC-denied one (a 403 is no error)
            "errorCount": 0,
        },
    ]


def test_trace_queries_read_zipkins_parameters() -> None:
    query = zipkin.TraceQuery.from_args(
        {
            "serviceName": "Reviews.Default",
            "annotationQuery": "error and http.method=GET",
            "minDuration": "100",
            "endTs": "2000",
            "lookback": "1000",
            "limit": "3",
        }
    )
    assert query.service_name == "reviews.default"
    assert query.annotation_query == (("error", None), ("http.method", "GET"))
    assert (query.min_duration, query.end_ts, query.lookback, query.limit) == (100, 2000, 1000, 3)
    assert query.in_window(1_500_000) and not query.in_window(999_999)
    for bad, message in (({"limit": "0"}, "limit must be at least 1"), ({"endTs": "x"}, "whole")):
        with pytest.raises(ValueError, match=message):
            zipkin.TraceQuery.from_args(bad)


# ============================================================================================
# The waterfall and the metrics table


def test_a_trace_is_drawn_as_a_waterfall_under_its_root() -> None:
    trace = recorded_trace(f"{PRODUCTPAGE}:9080/*")

    text = commands.format_trace(trace, bar_width=10)

    header, *rows = text.splitlines()
    assert header.startswith(f"trace {trace[0]['traceId']}  istio-ingressgateway.istio-system")
    assert "GET /productpage" in header and header.endswith("5 spans")
    assert [re.match(r"  (.*?) +(server|client)  ", row).groups() for row in rows] == [
        ("istio-ingressgateway.istio-system", "server"),
        ("└─ istio-ingressgateway.istio-system", "client"),
        ("   └─ productpage.default", "server"),
        ("      └─ productpage.default", "client"),
        ("         └─ reviews.default", "server"),
    ]
    bars = [row.rsplit("|", 2)[1] for row in rows]
    assert bars[0] == "█" * 10  # the root lasts as long as the whole trace
    assert all(len(bar) == 10 for bar in bars)
    assert bars[-1].strip() and bars[-1].startswith("  ")  # reviews answered late and fast
    assert all(row.endswith(" ms  200") for row in rows)


def test_without_utf8_the_waterfall_is_ascii_and_marks_errors() -> None:
    [uf_trace] = [
        [zipkin.normalize_span(span)]
        for span in recorded_spans()
        if span["tags"].get("response_flags") == "UF"
    ]
    text = commands.format_trace(uf_trace, unicode=False, bar_width=4)

    assert text.isascii()
    assert text.splitlines()[0].endswith("GET /uf  0.5 ms  1 span  1 error")
    assert text.splitlines()[1].endswith("|####|    0.5 ms  ERROR 503 UF")


def test_spans_whose_parent_is_missing_are_shown_at_the_top_level() -> None:
    trace = recorded_trace(f"{PRODUCTPAGE}:9080/*")
    without_gateway = [
        s for s in trace if not s["localEndpoint"]["serviceName"].startswith("istio")
    ]

    rows = commands.format_trace(without_gateway, unicode=False).splitlines()[1:]

    assert re.match(r"  productpage.default +server", rows[0])  # its parent was not reported
    assert re.match(r"  `- productpage.default +client", rows[1])
    assert re.match(r"     `- reviews.default +server", rows[2])


def test_the_metrics_table_adds_up_requests_by_caller_callee_and_outcome() -> None:
    samples = client.parse_metrics(recorded_metrics().exposition().decode())
    doubled = [*samples, *samples]

    rows = commands.metrics_rows(doubled)

    assert (
        "source",
        "istio-ingressgateway.istio-system",
        "productpage-v1.default",
        PRODUCTPAGE,
        "200",
        "-",
        "unknown",
        "2",
    ) in rows
    assert (
        "destination",
        "unknown",
        "reviews-v2.default",
        REVIEWS,
        "200",
        "-",
        "none",
        "2",
    ) in rows
    assert sum(int(row[-1]) for row in rows) == 2 * len(recorded_lines())
    line = commands.format_sample(MetricSample("istio_requests_total", {"a": 'x"y'}, 3.0))
    assert line == 'istio_requests_total{a="x\\"y"} 3'


# ============================================================================================
# Request bodies: chunked as Envoy sends them, or with a Content-Length


@pytest.mark.parametrize(
    ("headers", "raw", "body"),
    [
        ({"Transfer-Encoding": "chunked"}, b"3\r\n[1,\r\n2;ext=1\r\n2]\r\n0\r\n\r\n", b"[1,2]"),
        ({"Transfer-Encoding": "chunked"}, b"2\r\n[]\r\n0\r\nTrailer: x\r\n\r\n", b"[]"),
        ({"Content-Length": "2"}, b"[]", b"[]"),
        (
            {"Content-Length": "22", "Content-Encoding": "gzip"},
            gzip.compress(b"[]", mtime=0),
            b"[]",
        ),
    ],
)
def test_bodies_are_read_however_they_are_framed(
    headers: dict[str, str], raw: bytes, body: bytes
) -> None:
    assert server.read_body(headers, io.BytesIO(raw)) == body


@pytest.mark.parametrize(
    ("headers", "raw", "status", "message"),
    [
        ({"Transfer-Encoding": "chunked"}, b"5\r\n[1]", 400, "ended early"),
        ({"Transfer-Encoding": "chunked"}, b"zz\r\n", 400, "malformed chunk size"),
        ({"Transfer-Encoding": "chunked"}, b"9\r\n123456789\r\n0\r\n\r\n", 413, "larger"),
        ({}, b"[]", 411, "Content-Length or Transfer-Encoding"),
        ({"Content-Length": "2", "Content-Encoding": "br"}, b"[]", 400, "Content-Encoding"),
        ({"Content-Length": "2", "Content-Encoding": "gzip"}, b"[]", 400, "not valid gzip"),
    ],
)
def test_bodies_that_cannot_be_read_are_refused(
    headers: dict[str, str], raw: bytes, status: int, message: str
) -> None:
    with pytest.raises(server.HttpError, match=message) as raised:
        server.read_body(headers, io.BytesIO(raw), limit=8)
    assert raised.value.status == status


# ============================================================================================
# The real process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Telemetry:
    """`python -m istiolab.sandbox.telemetry` running on free loopback ports."""

    state_dir: Path
    process: subprocess.Popen[bytes]
    zipkin_port: int
    metrics_port: int

    @property
    def zipkin_url(self) -> str:
        return f"http://{HOST}:{self.zipkin_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/stats/prometheus"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "telemetry"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(HOST, port or self.zipkin_port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def post_chunked(self, body: bytes, **headers: str) -> tuple[int, bytes]:
        """POST spans as Envoy does: Transfer-Encoding chunked, no Content-Length."""
        connection = http.client.HTTPConnection(HOST, self.zipkin_port, timeout=10)
        try:
            half = len(body) // 2
            connection.request(
                "POST",
                "/api/v2/spans",
                body=iter([body[:half], body[half:]]),
                headers={"Content-Type": "application/json", **headers},
                encode_chunked=True,
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def metrics(self) -> dict[str, Any]:
        status, body = self.request("GET", "/stats/prometheus", port=self.metrics_port)
        assert status == 200
        return parsed(body)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_telemetry(state_dir: Path, *extra: str, zipkin_port: int | None = None) -> Telemetry:
    zipkin_port = zipkin_port or free_port()
    metrics_port = free_port()
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "istiolab.sandbox.telemetry",
            "--state-dir",
            str(state_dir),
            "--zipkin-port",
            str(zipkin_port),
            "--metrics-port",
            str(metrics_port),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    telemetry = Telemetry(state_dir, process, zipkin_port, metrics_port)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((HOST, metrics_port), timeout=0.5):
                return telemetry
        except OSError:
            time.sleep(0.05)  # poll interval while the process starts
    telemetry.stop()
    assert process.stderr is not None
    raise RuntimeError(f"the telemetry process did not start: {process.stderr.read()!r}")


@pytest.fixture
def telemetry(tmp_path: Path) -> Iterator[Telemetry]:
    started = start_telemetry(tmp_path / "state")
    try:
        yield started
    finally:
        assert started.stop() == 0  # SIGTERM: a clean exit
        assert started.process.stderr is not None
        assert started.process.stderr.read() == b""
        started.process.stderr.close()


def wait_for(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """read() until done(value) holds, or the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)  # poll interval while the process reads what arrived
        value = read()
    return value


def window(**query: object) -> str:
    """A /api/v2/traces query around the recording's time."""
    parameters = {"endTs": RECORDED_END_MS, "lookback": 3_600_000, **query}
    return "/api/v2/traces?" + urlencode(parameters)


def test_envoys_chunked_span_batches_are_collected_and_read_back(telemetry: Telemetry) -> None:
    for post in recorded_posts():
        assert "content-length" not in post["headers"]
        assert post["headers"]["transfer-encoding"] == "chunked"
        status, body = telemetry.post_chunked(post["body"].encode())
        assert (status, body) == (202, b"")

    traces = telemetry.get_json(window(limit=100))
    assert len(traces) == 6  # seven requests; the last one was not sampled (README)
    assert [t[0]["timestamp"] for t in traces] == sorted(
        (t[0]["timestamp"] for t in traces), reverse=True
    )
    [page] = [t for t in traces if len(t) == 5]
    assert telemetry.get_json(f"/api/v2/trace/{page[0]['traceId']}") == page
    assert telemetry.get_json("/api/v2/services") == [
        "istio-ingressgateway.istio-system",
        "productpage.default",
        "reviews.default",
    ]
    assert telemetry.get_json("/api/v2/spans?serviceName=reviews.default") == [f"{REVIEWS}:9080/*"]
    links = telemetry.get_json(f"/api/v2/dependencies?endTs={RECORDED_END_MS}&lookback=3600000")
    assert {(link["parent"], link["child"]) for link in links} == {
        ("istio-ingressgateway.istio-system", "productpage.default"),
        ("productpage.default", "reviews.default"),
    }
    health = telemetry.get_json("/health")
    assert health["status"] == "UP"
    assert health["zipkin"]["spans"] == health["zipkin"]["received_spans"] == 11
    assert health["zipkin"]["evicted_spans"] == 0


def test_trace_queries_filter_like_zipkins(telemetry: Telemetry) -> None:
    for post in recorded_posts():
        telemetry.post_chunked(post["body"].encode())

    gateway = telemetry.get_json(window(serviceName="istio-ingressgateway.istio-system"))
    assert len(gateway) == 2  # the page and the 404
    assert (
        len(telemetry.get_json(window(serviceName="istio-ingressgateway.istio-system", limit=1)))
        == 1
    )
    errors = telemetry.get_json(window(annotationQuery="error"))
    assert sorted(t[0]["tags"]["response_flags"] for t in errors) == ["UF", "UO"]
    slow = telemetry.get_json(window(minDuration=10_000))
    assert [len(t) for t in slow] == [5]
    assert telemetry.get_json(window(lookback=1, endTs=RECORDED_END_MS - 3_600_000)) == []
    a_day = 86_400_000
    assert telemetry.get_json(window(endTs=RECORDED_END_MS + 2 * a_day, lookback=a_day)) == []


def test_bad_requests_get_a_clear_answer(telemetry: Telemetry) -> None:
    status, body = telemetry.post_chunked(b'{"not": "a list"}')
    assert (status, body) == (400, b"expected a JSON list of Zipkin v2 spans, got a JSON object\n")
    status, body = telemetry.post_chunked(b"[{")
    assert status == 400 and body.startswith(b"malformed JSON")
    status, body = telemetry.request("GET", "/api/v2/trace/0123456789abcdef")
    assert (status, body) == (404, b"traceId 0123456789abcdef not found\n")
    assert telemetry.request("GET", "/api/v2/spans")[0] == 400  # serviceName is required
    assert telemetry.request("GET", "/api/v2/traces?limit=many")[0] == 400
    assert telemetry.get_json("/health")["zipkin"]["rejected_messages"] == 2


def test_content_length_and_gzip_bodies_are_accepted(telemetry: Telemetry) -> None:
    body = recorded_posts()[0]["body"].encode()
    assert telemetry.request("POST", "/api/v2/spans", body)[0] == 202
    encoded = gzip.compress(recorded_posts()[1]["body"].encode())
    assert telemetry.post_chunked(encoded, **{"Content-Encoding": "gzip"})[0] == 202
    assert telemetry.get_json("/health")["zipkin"]["spans"] == 2


def test_the_oldest_traces_are_dropped_beyond_max_spans(tmp_path: Path) -> None:
    small = start_telemetry(tmp_path, "--max-spans", "4")
    try:
        for post in recorded_posts():  # 11 spans in 6 traces, a whole trace at a time
            small.post_chunked(post["body"].encode())
        health = small.get_json("/health")["zipkin"]
        kept = {t[0]["traceId"] for t in small.get_json(window(limit=100))}
    finally:
        assert small.stop() == 0
        assert small.process.stderr is not None
        small.process.stderr.close()
    assert health["spans"] <= 4 and health["received_spans"] == 11
    assert health["spans"] + health["evicted_spans"] == 11
    newest = {json.loads(post["body"])[0]["traceId"] for post in recorded_posts()[-2:]}
    assert newest <= kept


def test_a_taken_port_is_a_one_line_error(telemetry: Telemetry, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "istiolab.sandbox.telemetry",
            "--state-dir",
            str(tmp_path),
            "--zipkin-port",
            str(telemetry.zipkin_port),
            "--metrics-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "python -m istiolab.sandbox.telemetry: error: port "
        f"{telemetry.zipkin_port} on 127.0.0.1 is already in use: Zipkin's API cannot listen "
        "there\n"
    )


def requests_total(families: Mapping[str, Any], **labels: str) -> float:
    return sum(
        sample.value
        for sample in families["istio_requests"].samples
        if all(sample.labels.get(key) == value for key, value in labels.items())
    )


def test_access_logs_are_counted_and_recounted_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    workloads.write_workloads(state / "telemetry" / "workloads.json", RECORDED_MESH)
    lines = recorded_lines()
    (state / "telemetry" / "gateway.jsonl").write_text("\n".join(lines[:2]) + "\n")
    first = start_telemetry(state)
    try:
        counted = wait_for(first.metrics, lambda f: "istio_requests" in f)
        assert requests_total(counted) == 2
        # A new proxy's log appears, line by line (the last one not yet complete).
        sidecar = state / "telemetry" / "productpage.jsonl"
        sidecar.write_text("\n".join(lines[2:6]) + "\n" + lines[6][:40])
        counted = wait_for(first.metrics, lambda f: requests_total(f) == 6)
        assert requests_total(counted, source_workload="productpage-v1", response_flags="UO") == 1
        with sidecar.open("a") as file:
            file.write(lines[6][40:] + "\nnot an access log line\n")
        counted = wait_for(first.metrics, lambda f: requests_total(f) == 7)
        assert requests_total(counted) == 7
        health = json.loads(first.request("GET", "/health", port=first.metrics_port)[1])
        assert health["access_logs"]["invalid_lines"] == 1
    finally:
        assert first.stop() == 0
        assert first.process.stderr is not None
        first.process.stderr.close()

    again = start_telemetry(state)  # counts survive: every log is read from its start
    try:
        counted = wait_for(
            again.metrics, lambda f: "istio_requests" in f and requests_total(f) == 7
        )
        assert (
            requests_total(counted, reporter="source", source_workload="istio-ingressgateway") == 2
        )
    finally:
        assert again.stop() == 0
        assert again.process.stderr is not None
        again.process.stderr.close()


# ============================================================================================
# A real Envoy, one hop, reporting to the real process


@pytest.fixture(scope="module")
def envoy_path() -> str:
    try:
        return binary.envoy_binary()
    except IstiolabError as error:
        pytest.skip(str(error))


def one_hop_bootstrap(
    caller: Pod, callee: Pod, telemetry: Telemetry, admin_port: int
) -> dict[str, Any]:
    """One Envoy playing both sides of a call: the caller's HTTP-proxy listener (reporter
    source) and the callee's inbound listener (reporter destination), each with its own JSON
    access log and Istio's Zipkin tracer, spans flushed at once."""
    assert caller.sidecar and callee.sidecar
    caller_id, callee_id = sidecar_node_id(caller), sidecar_node_id(callee)
    outbound_cluster = f"outbound|9080||{REVIEWS}"
    tracing = {
        "random_sampling": {"value": 100},
        "provider": {
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": "zipkin",
                "collector_endpoint": "/api/v2/spans",
                "collector_endpoint_version": "HTTP_JSON",
                "trace_id_128bit": True,
                "shared_span_context": False,
            },
        },
    }

    def connection_manager(
        reporter: str, node_id: str, log: Path, routes: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": reporter,
                "http_protocol_options": {"allow_absolute_url": True},
                "access_log": [
                    access_log.envoy_access_log(log, reporter=reporter, proxy_id=node_id)
                ],
                "tracing": tracing,
                "route_config": routes,
                "http_filters": [
                    {
                        "name": "envoy.filters.http.router",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3."
                            "Router"
                        },
                    }
                ],
            },
        }

    def routes(name: str, domains: list[str], cluster: str, **extra: Any) -> dict[str, Any]:
        route = {
            "match": {"prefix": "/"},
            "decorator": {"operation": f"{REVIEWS}:9080/*"},
            "route": {"cluster": cluster, "timeout": "0s"},
        }
        return {
            "name": name,
            "virtual_hosts": [{"name": name, "domains": domains, "routes": [route], **extra}],
        }

    def listener(port: int, direction: str, manager: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": f"127.0.0.1_{port}",
            "address": {"socket_address": {"address": HOST, "port_value": port}},
            "traffic_direction": direction,
            "filter_chains": [{"filters": [manager]}],
        }

    def static(name: str, port: int) -> dict[str, Any]:
        address = {"socket_address": {"address": HOST, "port_value": port}}
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
            },
        }

    peer_header = {
        "header": {"key": access_log.PEER_HEADER, "value": caller_id},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    return {
        "node": {"id": caller_id, "cluster": "productpage.default"},
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        # Envoy's Zipkin reporter buffers tracing.zipkin.min_flush_spans spans (5) or waits
        # tracing.zipkin.flush_interval_ms (5000): here, every span is sent at once.
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        "tracing.zipkin.min_flush_spans": 1,
                        "tracing.zipkin.flush_interval_ms": 100,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [
                listener(
                    caller.sidecar.outbound_port,
                    "OUTBOUND",
                    connection_manager(
                        "source",
                        caller_id,
                        telemetry.log_dir / "productpage.jsonl",
                        routes(
                            "http_proxy",
                            ["reviews", "reviews:9080"],
                            outbound_cluster,
                            request_headers_to_add=[peer_header],
                        ),
                    ),
                ),
                listener(
                    callee.sidecar.inbound_port,
                    "INBOUND",
                    connection_manager(
                        "destination",
                        callee_id,
                        telemetry.log_dir / "reviews.jsonl",
                        routes("inbound|9080||", ["*"], "inbound|9080||"),
                    ),
                ),
            ],
            "clusters": [
                static(outbound_cluster, callee.sidecar.inbound_port),
                static("inbound|9080||", callee.app_port),
                static("zipkin", telemetry.zipkin_port),
            ],
        },
    }


@pytest.mark.sandbox
def test_a_real_envoy_reports_spans_and_request_metrics_end_to_end(
    envoy_path: str, telemetry: Telemetry, tmp_path: Path
) -> None:
    app = Upstream(reply=Reply(body='{"id": "0"}'))
    caller = bookinfo_pod(
        "productpage-v1-6b7f6d9c8-e2e00",
        "productpage",
        "v1",
        closed_port(),
        SidecarPorts(closed_port(), closed_port(), closed_port()),
    )
    callee = bookinfo_pod(
        "reviews-v2-5f7c9d8b6-e2e00",
        "reviews",
        "v2",
        app.port,
        SidecarPorts(closed_port(), closed_port(), closed_port()),
    )
    mesh = Mesh((service("productpage"), service("reviews")), (caller, callee), Gateway())
    workloads.write_workloads(telemetry.log_dir / "workloads.json", mesh)
    config = tmp_path / "envoy.json"
    assert caller.sidecar is not None
    config.write_text(
        json.dumps(one_hop_bootstrap(caller, callee, telemetry, caller.sidecar.admin_port))
    )
    accepted, output = binary.validate(config)
    assert accepted and "deprecated" not in output, output
    envoy = subprocess.Popen(
        binary.run_command(config, log_path=tmp_path / "envoy.log"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        statuses = []
        for _ in range(3):
            response = wait_for(
                lambda: _proxy_get(caller.sidecar.outbound_port, "http://reviews:9080/reviews/0"),
                lambda status: status is not None,
            )
            statuses.append(response)
        assert statuses == [200, 200, 200]

        traces = wait_for(
            lambda: telemetry.get_json("/api/v2/traces?serviceName=productpage.default"),
            lambda found: len(found) == 3 and all(len(t) == 2 for t in found),
        )
        for trace in traces:
            client_span = next(s for s in trace if s["kind"] == "CLIENT")
            server_span = next(s for s in trace if s["kind"] == "SERVER")
            assert server_span["parentId"] == client_span["id"]
            assert client_span["name"] == f"{REVIEWS}:9080/*"
            assert client_span["tags"]["http.status_code"] == "200"

        families = wait_for(
            telemetry.metrics, lambda f: "istio_requests" in f and requests_total(f) == 6
        )
        common = {
            "source_workload": "productpage-v1",
            "destination_workload": "reviews-v2",
            "destination_service": REVIEWS,
            "response_code": "200",
            "response_flags": "-",
        }
        assert requests_total(families, reporter="source", **common) == 3
        assert (
            requests_total(
                families, reporter="destination", connection_security_policy="none", **common
            )
            == 3
        )
        line = json.loads((telemetry.log_dir / "reviews.jsonl").read_text().splitlines()[0])
        assert line["peer_metadata_id"] == sidecar_node_id(caller)
        assert line["response_code"] == 200 and line["downstream_peer_uri_san"] is None
    finally:
        stop(envoy)
        app.close()


def _proxy_get(port: int, url: str) -> int | None:
    """GET an absolute-form URL through an HTTP-proxy listener; None while nothing listens."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


# ============================================================================================
# The sandbox target and the commands, with a control plane that names the process


def as_if_now(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans moved in time so that the last one started a second ago: the target and the
    commands ask for recent traces."""
    shift = int((time.time() - 1) * 1_000_000) - max(span["timestamp"] for span in spans)
    return [{**span, "timestamp": span["timestamp"] + shift} for span in spans]


@pytest.fixture
def control_plane(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, Any]], Path]]:
    """A control plane API answering /status with what it is given, and its state directory."""
    started: list[api.ApiServer] = []

    def start(status: dict[str, Any]) -> Path:
        control = api.ApiServer(0, {"/status": lambda _: status})
        control.serve_in_background()
        started.append(control)
        state_dir = telemetry.state_dir
        (state_dir / api.INFO_FILE).write_text(
            json.dumps({"pid": os.getpid(), "api_port": control.port})
        )
        monkeypatch.setenv("ISTIOLAB_STATE_DIR", str(state_dir))
        return state_dir

    yield start
    for control in started:
        control.close()


def test_the_sandbox_target_reads_traces_and_metrics_where_status_says(
    telemetry: Telemetry, control_plane: Callable[[dict[str, Any]], Path]
) -> None:
    telemetry.post_chunked(json.dumps(as_if_now(recorded_trace(f"{PRODUCTPAGE}:9080/*"))).encode())
    workloads.write_workloads(telemetry.log_dir / "workloads.json", RECORDED_MESH)
    (telemetry.log_dir / "sidecar.jsonl").write_text("\n".join(recorded_lines()) + "\n")
    state_dir = control_plane({"zipkin": telemetry.zipkin_url, "metrics": telemetry.metrics_url})
    target = SandboxTarget(state_dir)

    [found] = target.traces(service="reviews")  # finds reviews.default, as on kind
    assert len(found) == 5
    assert target.traces(service="ratings") == []
    samples = wait_for(target.request_metrics, lambda s: len(s) >= 1)
    assert {s.name for s in samples} == {"istio_requests_total"}
    assert sum(s.value for s in samples) == len(recorded_lines())


def test_a_control_plane_without_telemetry_urls_is_reported(
    control_plane: Callable[[dict[str, Any]], Path],
) -> None:
    target = SandboxTarget(control_plane({"workloads": []}))
    with pytest.raises(TargetUnavailable, match="does not say where its Zipkin API") as raised:
        target.traces()
    assert "istiolab up" in raised.value.fix
    with pytest.raises(TargetUnavailable, match="request metrics"):
        target.request_metrics()


def test_a_telemetry_process_that_does_not_answer_is_reported(
    control_plane: Callable[[dict[str, Any]], Path],
) -> None:
    gone = f"http://{HOST}:{closed_port()}"
    target = SandboxTarget(control_plane({"zipkin": gone, "metrics": gone + "/stats/prometheus"}))
    with pytest.raises(TargetUnavailable, match="telemetry process does not answer"):
        target.traces()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def istiolab(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """Run `istiolab ARGS` in this process, with the telemetry commands registered."""
    modules = tuple(dict.fromkeys((*cli.COMMAND_MODULES, "telemetry")))
    monkeypatch.setattr(cli, "COMMAND_MODULES", modules)

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def test_the_commands_say_when_the_sandbox_is_not_running(
    istiolab: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISTIOLAB_STATE_DIR", str(tmp_path / "never-started"))
    for command in ("traces", "metrics"):
        result = istiolab(command)
        assert result.code == 1
        assert result.err == "istiolab: error: the sandbox is not running\n  fix: istiolab up\n"


def test_istiolab_traces_and_metrics_on_the_sandbox(
    istiolab: Callable[..., Result],
    telemetry: Telemetry,
    control_plane: Callable[[dict[str, Any]], Path],
) -> None:
    control_plane({"zipkin": telemetry.zipkin_url, "metrics": telemetry.metrics_url})
    assert "No traces yet" in istiolab("traces").out
    telemetry.post_chunked(json.dumps(as_if_now(recorded_spans())).encode())
    workloads.write_workloads(telemetry.log_dir / "workloads.json", RECORDED_MESH)
    (telemetry.log_dir / "sidecar.jsonl").write_text("\n".join(recorded_lines()) + "\n")

    result = istiolab("traces", "--service", "istio-ingressgateway", "--limit", "1")
    assert result.code == 0
    assert result.out.count("\ntrace ") + result.out.startswith("trace ") == 1
    assert "istio-ingressgateway.istio-system" in result.out
    as_json = json.loads(istiolab("traces", "-o", "json", "--limit", "100").out)
    assert len(as_json) == 6

    wait_for(lambda: istiolab("metrics", "-o", "json").out, lambda out: out.strip() != "[]")
    table = istiolab("metrics").out
    assert table.split()[:8] == list(commands.METRICS_HEADER)
    assert "productpage-v1.default" in table and "mutual_tls" in table
    assert table.rstrip().endswith(f"histograms: {telemetry.metrics_url}")
    text = istiolab("metrics", "-o", "prometheus").out
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
