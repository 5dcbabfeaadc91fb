"""The Telemetry API's tracing settings, as each proxy's HTTP connection manager gets them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from istiolab.errors import IstiolabError
from istiolab.sandbox.envoy import binary, bootstrap
from istiolab.sandbox.model import Gateway, Mesh, Pod, Service, ServicePort, SidecarPorts
from istiolab.sandbox.translate import listeners, tracing

REVIEWS = {"app": "reviews", "version": "v2"}


def telemetries(text: str) -> list[dict[str, Any]]:
    found = []
    for index, document in enumerate(d for d in yaml.safe_load_all(text) if d):
        document["metadata"].setdefault("creationTimestamp", f"2026-11-25T00:00:{index:02d}Z")
        found.append(document)
    return found


def telemetry(name: str, namespace: str, spec: str) -> str:
    return f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
---"""


MESH_100 = telemetry("mesh-default", "istio-system", "{tracing: [{randomSamplingPercentage: 100}]}")
NAMESPACE_50 = telemetry("ns", "default", "{tracing: [{randomSamplingPercentage: 50}]}")
SELECT_REVIEWS = "selector: {matchLabels: {app: reviews}}"
REVIEWS_10 = telemetry(
    "reviews", "default", f"{{{SELECT_REVIEWS}, tracing: [{{randomSamplingPercentage: 10}}]}}"
)
ROOT_SELECTOR_5 = telemetry(
    "root-selector",
    "istio-system",
    f"{{{SELECT_REVIEWS}, tracing: [{{randomSamplingPercentage: 5}}]}}",
)


def test_without_any_telemetry_one_request_in_a_hundred_is_traced() -> None:
    settings = tracing.settings_for([], "default", REVIEWS)
    assert settings == tracing.TracingSettings(sampling=1.0, reporting=True)


@pytest.mark.parametrize(
    ("resources", "labels", "sampling"),
    [
        (MESH_100, REVIEWS, 100.0),
        (MESH_100 + NAMESPACE_50, REVIEWS, 50.0),
        (MESH_100 + NAMESPACE_50 + REVIEWS_10, REVIEWS, 10.0),
        (MESH_100 + NAMESPACE_50 + REVIEWS_10, {"app": "ratings"}, 50.0),
        # A selector in the root namespace is ignored, as istiod ignores it.
        (MESH_100 + ROOT_SELECTOR_5, REVIEWS, 100.0),
    ],
)
def test_the_narrowest_telemetry_decides(
    resources: str, labels: dict[str, str], sampling: float
) -> None:
    assert tracing.settings_for(telemetries(resources), "default", labels).sampling == sampling


def test_a_narrower_telemetry_overrides_only_the_fields_it_sets() -> None:
    resources = telemetries(
        telemetry(
            "mesh-default",
            "istio-system",
            "{tracing: [{randomSamplingPercentage: 100, customTags: {a: {literal: {value: x}}}}]}",
        )
        + telemetry("ns", "default", "{tracing: [{customTags: {b: {literal: {value: y}}}}]}")
    )
    settings = tracing.settings_for(resources, "default", REVIEWS)
    assert settings.sampling == 100.0  # inherited
    assert dict(settings.custom_tags) == {"b": {"literal": {"value": "y"}}}  # replaced whole


@pytest.mark.parametrize(
    "spec",
    [
        "{tracing: [{disableSpanReporting: true}]}",
        "{tracing: [{providers: [{name: otel}]}]}",
    ],
)
def test_a_proxy_can_be_told_not_to_report(spec: str) -> None:
    settings = tracing.settings_for(telemetries(telemetry("ns", "default", spec)), "default", {})
    assert not settings.reporting
    assert (
        tracing.connection_manager_tracing(settings, canonical_service="x", namespace="d") is None
    )


def test_the_connection_manager_gets_istios_zipkin_tracer_and_tags() -> None:
    settings = tracing.TracingSettings(
        sampling=25.0,
        custom_tags={
            "lab": {"literal": {"value": "tracing"}},
            "client": {"header": {"name": "user-agent", "defaultValue": "none"}},
            "pod": {"environment": {"name": "POD_NAME"}},
        },
    )
    config = tracing.connection_manager_tracing(
        settings, canonical_service="reviews", namespace="default", spawn_upstream_span=True
    )
    assert config is not None
    assert config["random_sampling"] == {"value": 25.0}
    assert config["spawn_upstream_span"] is True
    zipkin = config["provider"]["typed_config"]
    assert zipkin["collector_service"]["http_uri"]["cluster"] == tracing.ZIPKIN_CLUSTER
    assert zipkin["collector_endpoint_version"] == "HTTP_JSON"
    assert (zipkin["trace_id_128bit"], zipkin["shared_span_context"]) == (True, False)
    tags = {tag["tag"]: tag for tag in config["custom_tags"]}
    assert tags["istio.canonical_service"]["literal"] == {"value": "reviews"}
    assert tags["lab"]["literal"] == {"value": "tracing"}
    assert tags["client"]["request_header"] == {"name": "user-agent", "default_value": "none"}
    assert tags["pod"]["environment"] == {"name": "POD_NAME"}


def test_the_tracer_configuration_passes_envoy_validate(tmp_path: Path) -> None:
    try:
        binary.envoy_binary()
    except IstiolabError as error:
        pytest.skip(str(error))
    pod = Pod(
        name="reviews-v2-abc",
        namespace="default",
        deployment="reviews-v2",
        labels=REVIEWS,
        service_account="bookinfo-reviews",
        app_port=19082,
        container_ports={"http": 9080},
        sidecar=SidecarPorts(15090, 15091, 15092),
    )
    resources = telemetries(
        telemetry(
            "mesh-default",
            "istio-system",
            "{tracing: [{randomSamplingPercentage: 100, customTags: {"
            "lab: {literal: {value: tracing}}, client: {header: {name: user-agent}}, "
            "pod: {environment: {name: POD_NAME, defaultValue: unknown}}}}]}",
        )
    )
    mesh = Mesh(
        services=(Service("reviews", "default", (ServicePort(9080, "http"),), {"app": "reviews"}),),
        pods=(pod,),
        gateway=Gateway(),
        istio={"Telemetry": tuple(resources)},
    )
    base = bootstrap.bootstrap(bootstrap.sidecar_node_id(pod), "reviews.default", 1, tmp_path)
    static = bootstrap.static_bootstrap(
        base,
        listeners=[listeners.inbound_listener(pod, mesh=mesh)],
        clusters=[tracing.zipkin_cluster(9411), _inbound_cluster()],
    )
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(static))
    ok, output = binary.validate(path)
    assert ok, output
    assert "deprecated" not in output.lower(), output


def _inbound_cluster() -> dict[str, Any]:
    return {"name": "inbound|9080||", "type": "STATIC", "connect_timeout": "10s"}
