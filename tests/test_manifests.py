"""The Kubernetes and Istio manifests under manifests/, checked without a cluster.

Every stage is built with the real kustomize (`kubectl kustomize`) and the output is read back.
The built stage 00 must be Istio's Bookinfo (the same objects, names, labels and port) plus the
hardening this course adds, with the images versions.env pins. The kind config and the Istio
install settings must agree with versions.env on the ingress ports. Schema validation of the
manifests is not repeated here; it belongs to the validation library and its tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from bookinfo.variants import VARIANTS
from istiolab import versions

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
STAGES_DIR = MANIFESTS / "stages"
STAGES = sorted(path.parent for path in STAGES_DIR.glob("*/kustomization.yaml"))
KIND_CONFIG = MANIFESTS / "kind" / "cluster.yaml"
ISTIO_OPERATOR = MANIFESTS / "istio" / "istio-operator.yaml"
TELEMETRY = MANIFESTS / "istio" / "telemetry.yaml"

PINS = versions.load()
TARGETS = {variant.target for variant in VARIANTS}
RESERVED_UID = 1337  # Istio's sidecar; traffic from this uid is never redirected to it

# Istio's samples/bookinfo/platform/kube/bookinfo.yaml, object for object.
DEPLOYMENTS = {
    "details-v1": ("details", "v1"),
    "ratings-v1": ("ratings", "v1"),
    "reviews-v1": ("reviews", "v1"),
    "reviews-v2": ("reviews", "v2"),
    "reviews-v3": ("reviews", "v3"),
    "productpage-v1": ("productpage", "v1"),
}
SERVICES = {"details", "ratings", "reviews", "productpage"}
PROMETHEUS_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "9080",
    "prometheus.io/path": "/metrics",
}
# Superseded kustomization fields (kustomize api/types/kustomization.go) and their replacements.
DEPRECATED_KUSTOMIZE_FIELDS = {
    "bases": "resources",
    "commonLabels": "labels",
    "patchesStrategicMerge": "patches",
    "patchesJson6902": "patches (with a target)",
    "vars": "replacements",
    "imageTags": "images",
}

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed; it builds the kustomizations"
)


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def build(directory: Path) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize DIRECTORY` prints."""
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"kubectl kustomize {directory.relative_to(ROOT)} failed:\n{result.stderr.strip()}"
        )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


@pytest.fixture(scope="module")
def stage00() -> tuple[dict[str, Any], ...]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed; it builds the kustomizations")
    return build(STAGES_DIR / "00-bookinfo")


@pytest.fixture(scope="module")
def deployments(stage00: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return of_kind(stage00, "Deployment")


def the_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: expected one container"
    return containers[0]


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity as a number (cores or bytes), for the units used here."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# --- the pins --------------------------------------------------------------------------------


def test_the_pins_the_manifests_are_checked_against_are_present() -> None:
    for key in (
        "INGRESS_HOST_PORT",
        "INGRESS_NODE_PORT",
        "BOOKINFO_IMAGE_PREFIX",
        "BOOKINFO_IMAGE_TAG",
    ):
        assert PINS.get(key), f"versions.env has no {key}"
    assert 30000 <= int(PINS["INGRESS_NODE_PORT"]) <= 32767, "outside the default NodePort range"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", PINS["GATEWAY_API_VERSION"])


def test_versions_reader_rejects_a_line_bash_would_read_differently(tmp_path: Path) -> None:
    pins = tmp_path / "versions.env"
    pins.write_text('# a comment\n\nISTIO_VERSION=1.30.5\nKIND_VERSION="v0.32.0"\n')
    with pytest.raises(ValueError, match=r"versions\.env:4: expected KEY=value"):
        versions.load(pins)


def test_versions_reader_rejects_a_key_set_twice(tmp_path: Path) -> None:
    pins = tmp_path / "versions.env"
    pins.write_text("ISTIO_VERSION=1.30.5\nISTIO_VERSION=1.30.6\n")
    with pytest.raises(ValueError, match=r"versions\.env:2: ISTIO_VERSION is already set"):
        versions.load(pins)


def test_bookinfo_image_is_the_pinned_name_of_a_dockerfile_target() -> None:
    assert versions.bookinfo_image("reviews", "v3", PINS) == (
        f"{PINS['BOOKINFO_IMAGE_PREFIX']}reviews-v3:{PINS['BOOKINFO_IMAGE_TAG']}"
    )
    with pytest.raises(LookupError, match="reviews has no version 'v9'"):
        versions.bookinfo_image("reviews", "v9", PINS)


# --- every stage -----------------------------------------------------------------------------


def test_the_stages_are_numbered_from_00_without_gaps() -> None:
    names = [stage.name for stage in STAGES]
    assert names and names[0] == "00-bookinfo"
    for number, name in enumerate(names):
        assert re.fullmatch(rf"{number:02d}-[a-z0-9]+(-[a-z0-9]+)*", name), (
            f"stage {name!r}: expected {number:02d}-<topic>"
        )


@needs_kubectl
@pytest.mark.parametrize("stage", STAGES, ids=[stage.name for stage in STAGES])
def test_every_stage_builds(stage: Path) -> None:
    objects = build(stage)
    assert objects, f"{stage.name} builds to nothing"
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name")


def test_each_later_stage_is_the_previous_one_plus_its_own_lab_solution() -> None:
    for previous, stage in pairwise(STAGES):
        kustomization = read_yaml(stage / "kustomization.yaml")
        resources = kustomization.get("resources", [])
        assert resources[:1] == [f"../{previous.name}"], (
            f"{stage.name}: its first resource must be the previous stage, ../{previous.name}"
        )
        solution = f"../../../labs/solutions/{stage.name}"
        others = resources[1:] + kustomization.get("components", [])
        assert others, f"{stage.name} adds nothing to {previous.name}"
        for entry in others:
            assert entry == solution, (
                f"{stage.name}: {entry!r} is neither the previous stage nor {solution}; a"
                " stage refers to its lab's solution folder and copies nothing"
            )
        assert "namespace" not in kustomization, f"{stage.name}: a stage sets no namespace"


# --- stage 00: Istio's Bookinfo, hardened ----------------------------------------------------


def test_stage_00_holds_exactly_istios_bookinfo_objects(
    stage00: tuple[dict[str, Any], ...],
) -> None:
    kinds = sorted({obj["kind"] for obj in stage00})
    assert kinds == ["Deployment", "Service", "ServiceAccount"]
    assert set(of_kind(stage00, "Deployment")) == set(DEPLOYMENTS)
    assert set(of_kind(stage00, "Service")) == SERVICES
    assert set(of_kind(stage00, "ServiceAccount")) == {f"bookinfo-{svc}" for svc in SERVICES}


def test_stage_00_is_in_the_default_namespace_without_a_mesh(
    stage00: tuple[dict[str, Any], ...],
) -> None:
    for obj in stage00:
        assert obj["metadata"].get("namespace") == "default", obj["metadata"]["name"]
        assert "istio-injection" not in obj["metadata"].get("labels", {})
        assert "sidecar.istio.io/inject" not in obj["metadata"].get("labels", {})


def test_deployments_carry_istios_labels_and_service_accounts(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for name, (app, version) in DEPLOYMENTS.items():
        deployment = deployments[name]
        labels = {"app": app, "version": version}
        assert deployment["metadata"]["labels"] == labels, name
        assert deployment["spec"]["selector"]["matchLabels"] == labels, name
        assert deployment["spec"]["template"]["metadata"]["labels"] == labels, name
        assert deployment["spec"]["replicas"] == 1, name
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"bookinfo-{app}", name
        assert the_container(deployment)["name"] == app, name


def test_images_are_the_pinned_builds_of_dockerfile_targets(
    deployments: dict[str, dict[str, Any]],
) -> None:
    prefix, tag = PINS["BOOKINFO_IMAGE_PREFIX"], PINS["BOOKINFO_IMAGE_TAG"]
    for name, (app, version) in DEPLOYMENTS.items():
        container = the_container(deployments[name])
        assert f"{app}-{version}" in TARGETS, f"{name}: no such target in bookinfo/Dockerfile"
        assert container["image"] == f"{prefix}{app}-{version}:{tag}", name
        # An explicit pull policy: the images are loaded into kind, never pulled.
        assert container["imagePullPolicy"] == "IfNotPresent", name


def test_the_image_tag_is_set_in_one_place() -> None:
    base = read_yaml(MANIFESTS / "bookinfo" / "kustomization.yaml")
    entries = base.get("images", [])
    assert {entry["name"] for entry in entries} == {
        f"{PINS['BOOKINFO_IMAGE_PREFIX']}{app}-{version}" for app, version in DEPLOYMENTS.values()
    }
    for entry in entries:
        assert entry.get("newTag") == PINS["BOOKINFO_IMAGE_TAG"], (
            f"{entry['name']}: newTag {entry.get('newTag')!r} is not BOOKINFO_IMAGE_TAG in"
            " versions.env"
        )
    for path in (MANIFESTS / "bookinfo").glob("*/deployment-*.yaml"):
        for container in read_yaml(path)["spec"]["template"]["spec"]["containers"]:
            assert ":" not in container["image"], (
                f"{path.relative_to(ROOT)}: set the tag in manifests/bookinfo/kustomization.yaml"
            )


def test_containers_serve_http_on_9080_with_health_probes(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for name, deployment in deployments.items():
        container = the_container(deployment)
        assert container["ports"] == [{"name": "http", "containerPort": 9080}], name
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, (
                f"{name}: {probe}"
            )


def test_containers_have_requests_within_limits(deployments: dict[str, dict[str, Any]]) -> None:
    for name, deployment in deployments.items():
        resources = the_container(deployment)["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, f"{name}: {resource} request {request} > limit {limit}"


def test_pods_run_unprivileged_with_a_read_only_root(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, name
        container = the_container(deployment)
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        uid = container["securityContext"].get("runAsUser", pod["securityContext"]["runAsUser"])
        assert uid != RESERVED_UID, f"{name}: uid 1337 is the sidecar's and bypasses the mesh"


def test_tmp_is_the_one_writable_directory(deployments: dict[str, dict[str, Any]]) -> None:
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert the_container(deployment)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}], name


def test_services_and_accounts_match_istios(stage00: tuple[dict[str, Any], ...]) -> None:
    services = of_kind(stage00, "Service")
    accounts = of_kind(stage00, "ServiceAccount")
    for svc in SERVICES:
        service = services[svc]
        assert service["metadata"]["labels"] == {"app": svc, "service": svc}
        # Named http: Istio reads the protocol from the port name (IST0118 otherwise).
        assert service["spec"]["ports"] == [{"name": "http", "port": 9080}], svc
        assert service["spec"]["selector"] == {"app": svc}, svc
        assert accounts[f"bookinfo-{svc}"]["metadata"]["labels"] == {"account": svc}


def test_productpage_pods_invite_prometheus(deployments: dict[str, dict[str, Any]]) -> None:
    for name, deployment in deployments.items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        expected = PROMETHEUS_ANNOTATIONS if name.startswith("productpage-") else {}
        assert annotations == expected, name


# --- kind and Istio agree with versions.env on the ingress ports -----------------------------


def test_kind_publishes_the_gateway_node_port_on_loopback() -> None:
    config = read_yaml(KIND_CONFIG)
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]
    assert config["nodes"][0]["extraPortMappings"] == [
        {
            "containerPort": int(PINS["INGRESS_NODE_PORT"]),
            "hostPort": int(PINS["INGRESS_HOST_PORT"]),
            "listenAddress": "127.0.0.1",
            "protocol": "TCP",
        }
    ]


def test_kind_config_leaves_the_node_image_to_versions_env() -> None:
    config = read_yaml(KIND_CONFIG)
    assert "name" not in config, "cluster-up.sh passes --name from KIND_CLUSTER_NAME"
    for node in config["nodes"]:
        assert "image" not in node, "cluster-up.sh passes --image from KIND_NODE_IMAGE"
    assert "kindest/node" not in KIND_CONFIG.read_text(encoding="utf-8")


def ingress_gateway(operator: dict[str, Any]) -> dict[str, Any]:
    gateways = operator["spec"]["components"]["ingressGateways"]
    [gateway] = [gw for gw in gateways if gw["name"] == "istio-ingressgateway"]
    return gateway


def test_istio_gateway_service_pins_the_node_port_kind_publishes() -> None:
    operator = read_yaml(ISTIO_OPERATOR)
    assert operator["apiVersion"] == "install.istio.io/v1alpha1"
    assert operator["kind"] == "IstioOperator"
    gateway = ingress_gateway(operator)
    assert gateway["enabled"] is True
    service = gateway["k8s"]["service"]
    assert service["type"] == "NodePort"
    ports = {port["name"]: port for port in service["ports"]}
    assert ports["http2"] == {
        "name": "http2",
        "port": 80,
        "targetPort": 8080,
        "nodePort": int(PINS["INGRESS_NODE_PORT"]),
        "protocol": "TCP",
    }
    # istioctl replaces the chart's port list with this one: the status port must stay in it.
    assert ports["status-port"]["port"] == 15021
    assert [port.get("nodePort") for port in service["ports"]].count(None) == len(ports) - 1


def test_istio_traces_to_the_jaeger_addon_through_the_telemetry_api() -> None:
    mesh = read_yaml(ISTIO_OPERATOR)["spec"]["meshConfig"]
    assert mesh["accessLogFile"] == "/dev/stdout"
    assert mesh["enableTracing"] is True
    providers = {provider["name"]: provider for provider in mesh["extensionProviders"]}
    assert providers["zipkin"]["zipkin"] == {
        "service": "zipkin.istio-system.svc.cluster.local",
        "port": 9411,
    }
    telemetry = read_yaml(TELEMETRY)
    assert telemetry["apiVersion"] == "telemetry.istio.io/v1"
    assert telemetry["kind"] == "Telemetry"
    assert telemetry["metadata"] == {"name": "mesh-default", "namespace": "istio-system"}
    assert "selector" not in telemetry["spec"], "the mesh-wide default selects no workload"
    [tracing] = telemetry["spec"]["tracing"]
    assert [provider["name"] for provider in tracing["providers"]] == ["zipkin"]
    assert tracing["randomSamplingPercentage"] == 1.0


# --- every manifest --------------------------------------------------------------------------


def test_no_manifest_uses_the_latest_tag() -> None:
    for path in MANIFESTS.rglob("*.yaml"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            assert not re.search(r":latest\b", line), (
                f"{path.relative_to(ROOT)}:{number}: pin a version instead of latest"
            )


def test_kustomizations_use_only_current_fields() -> None:
    kustomizations = list(MANIFESTS.rglob("kustomization.yaml"))
    assert kustomizations
    for path in kustomizations:
        kustomization = read_yaml(path)
        assert kustomization["apiVersion"].startswith("kustomize.config.k8s.io/"), path
        assert kustomization["kind"] in {"Kustomization", "Component"}, path
        for field, replacement in DEPRECATED_KUSTOMIZE_FIELDS.items():
            assert field not in kustomization, (
                f"{path.relative_to(ROOT)}: {field} is deprecated; use {replacement}"
            )
