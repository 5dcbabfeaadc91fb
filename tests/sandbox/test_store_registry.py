"""The sandbox's API server (store.py) and controllers (registry.py), without processes.

Stage 00 is built with the real `kubectl kustomize` and applied like `istiolab apply -k` would;
the registry then turns it into pods. Nothing here starts a process or an Envoy: the pods are the
registry's records, their ports are only allocated (checked free with a bind probe).
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bookinfo import variants
from istiolab import versions
from istiolab.errors import IstiolabError
from istiolab.sandbox.model import Mesh
from istiolab.sandbox.registry import (
    IMAGE_REPOSITORIES,
    PortAllocator,
    Registry,
    injection_decision,
    parse_image,
)
from istiolab.sandbox.store import (
    RESTARTED_AT,
    SANDBOX_UNSUPPORTED,
    NotFoundError,
    Store,
    load_documents,
    resolve,
)
from istiolab.validation import format_report, load_text
from istiolab.validation.loading import Loaded

REPO = Path(__file__).resolve().parents[2]
STAGE_00 = REPO / "manifests" / "stages" / "00-bookinfo"
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="needs kubectl (kubectl kustomize builds stage 00)"
)
NAME_CHARACTERS = "[bcdfghjklmnpqrstvwxz2456789]"  # Kubernetes' alphabet for generated names
POD_NAME = re.compile(
    rf"(?P<deployment>.+)-(?P<hash>{NAME_CHARACTERS}{{10}})-{NAME_CHARACTERS}{{5}}"
)
DEPLOYMENTS = {
    "details-v1",
    "productpage-v1",
    "ratings-v1",
    "reviews-v1",
    "reviews-v2",
    "reviews-v3",
}


def yaml(text: str, file: str = "test.yaml") -> Loaded:
    return load_text(textwrap.dedent(text), file)


def deployment(
    name: str = "reviews-v1",
    *,
    app: str = "reviews",
    version: str = "v1",
    image: str = "istiolab/examples-bookinfo-reviews-v1:0.1.0",
    replicas: int = 1,
    namespace: str = "default",
    template_labels: str = "",
    template_annotations: str = "",
) -> Loaded:
    return yaml(
        f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {name}
          namespace: {namespace}
          labels: {{app: {app}, version: {version}}}
        spec:
          replicas: {replicas}
          selector:
            matchLabels: {{app: {app}, version: {version}}}
          template:
            metadata:
              labels: {{app: {app}, version: {version}{template_labels}}}
              annotations: {{example: "yes"{template_annotations}}}
            spec:
              containers:
                - name: {app}
                  image: {image}
                  ports:
                    - containerPort: 9080
                      name: http
        """,
        f"{name}.yaml",
    )


DESTINATION_RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
    - name: v1
      labels: {version: v1}
    - name: v2
      labels: {version: v2}
"""


def virtual_service(name: str = "reviews", subset: str = "v1", host: str = "reviews") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts: [reviews]
  http:
    - route:
        - destination:
            host: {host}
            subset: {subset}
"""


@pytest.fixture(scope="module")
def stage_00() -> Loaded:
    if shutil.which("kubectl") is None:
        pytest.skip("needs kubectl (kubectl kustomize builds stage 00)")
    return load_documents(kustomize_dirs=[STAGE_00])


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def bookinfo(stage_00: Loaded, state: Path) -> tuple[Store, Registry]:
    """Stage 00 applied and reconciled, kept in `state`."""
    store = Store.load(state)
    result = store.apply(stage_00)
    assert result.ok, format_report(result.report)
    registry = Registry.load(state)
    registry.reconcile(store)
    return store, registry


def applied(store: Store, loaded: Loaded, **kwargs: object) -> list[str]:
    result = store.apply(loaded, **kwargs)  # type: ignore[arg-type]
    assert result.ok, format_report(result.report)
    return result.lines()


# --------------------------------------------------------------------------------------------
# Applying stage 00


@needs_kubectl
def test_stage_00_applies_with_kubectl_like_lines(stage_00: Loaded, state: Path) -> None:
    store = Store.load(state)
    result = store.apply(stage_00)
    assert result.ok, format_report(result.report)
    assert sorted(result.lines()) == sorted(
        [f"serviceaccount/bookinfo-{app} created" for app in variants.SERVICES]
        + [f"service/{app} created" for app in variants.SERVICES]
        + [f"deployment.apps/{name} created" for name in DEPLOYMENTS]
    )
    assert result.revision == store.revision == 1
    assert {d.name for d in store.get("deploy")} == DEPLOYMENTS


@needs_kubectl
def test_stage_00_runs_six_pods_behind_four_services(bookinfo: tuple[Store, Registry]) -> None:
    store, registry = bookinfo
    pods = registry.pods
    assert {p.deployment for p in pods} == DEPLOYMENTS
    assert len(pods) == 6
    for pod in pods:
        match = POD_NAME.fullmatch(pod.name)
        assert match, pod.name
        assert match["deployment"] == pod.deployment
        assert pod.labels["pod-template-hash"] == match["hash"]
        assert pod.sidecar is None  # stage 00: no istio-injection label
        assert pod.container_ports == {"http": 9080}
        assert pod.service_account == f"bookinfo-{pod.labels['app']}"
    assert len({p.app_port for p in pods}) == 6
    services = {s.name: s for s in registry.services(store)}
    assert set(services) == set(variants.SERVICES)
    for name, service in services.items():
        assert dict(service.selector) == {"app": name}
        assert [(p.port, p.name) for p in service.ports] == [(9080, "http")]
        assert service.fqdn == f"{name}.default.svc.cluster.local"
    mesh = registry.mesh(store)
    assert isinstance(mesh, Mesh)
    assert {p.deployment for p in mesh.pods_of(services["reviews"])} == {
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
    }


@needs_kubectl
def test_reapplying_the_same_files_changes_nothing(
    bookinfo: tuple[Store, Registry], stage_00: Loaded
) -> None:
    store, registry = bookinfo
    revision, pods = store.revision, registry.pods
    result = store.apply(stage_00)
    assert result.ok
    assert {line.rpartition(" ")[2] for line in result.lines()} == {"unchanged"}
    assert not result.changed
    assert store.revision == revision
    assert not registry.reconcile(store).changed
    assert registry.pods == pods


@needs_kubectl
def test_a_change_is_configured_and_bumps_generation_and_revision(
    bookinfo: tuple[Store, Registry],
) -> None:
    store, _ = bookinfo
    before = store.get("deployment", "default", "reviews-v1")[0]
    lines = applied(store, deployment(replicas=2, template_annotations=""))
    assert lines == ["deployment.apps/reviews-v1 configured"]
    after = store.get("deployment", "default", "reviews-v1")[0]
    assert after.generation == before.generation + 1
    assert after.resource_version == store.revision == before.resource_version + 1
    assert after.uid == before.uid and after.created == before.created


# --------------------------------------------------------------------------------------------
# All or nothing, with what is applied as known resources


def test_an_invalid_resource_rejects_the_whole_apply(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    revision = store.revision
    batch = yaml(
        virtual_service("reviews-good")
        + "---"
        + virtual_service("reviews-bad").replace("hosts:", "hostz:"),
        "labs/vs.yaml",
    )
    result = store.apply(batch)
    assert not result.ok
    assert result.outcomes == []
    bad = [f for f in result.report.errors if "reviews-bad" in f.resource]
    assert bad and 'unknown field "spec.hostz"' in bad[0].message
    assert bad[0].file == "labs/vs.yaml" and bad[0].path == "spec.hostz"
    assert store.get("vs") == []
    assert store.revision == revision
    assert Store.load(state).get("virtualservices") == []  # nothing written either


def test_a_subset_of_an_applied_destination_rule_resolves(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    applied(store, yaml(DESTINATION_RULE))
    assert applied(store, yaml(virtual_service(subset="v2"))) == [
        "virtualservice.networking.istio.io/reviews created"
    ]
    result = store.apply(yaml(virtual_service(name="reviews-v9", subset="v9")))
    assert not result.ok
    assert result.report.codes() == ["IST0101"]
    assert '"reviews+v9"' in result.report.errors[0].message


def test_a_namespace_must_exist(state: Path) -> None:
    store = Store.load(state)
    result = store.apply(yaml(BOOKINFO_REVIEWS.replace("namespace: default", "namespace: shop")))
    assert not result.ok
    assert 'namespaces "shop" not found' in format_report(result.report)
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n"
    lines = applied(store, yaml(namespace + BOOKINFO_REVIEWS.replace("default", "shop")))
    assert lines[0] == "namespace/shop created"
    assert store.get("ns", name="shop")[0].labels == {"kubernetes.io/metadata.name": "shop"}


def test_the_namespace_flag_fills_in_and_must_agree(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"))
    account = yaml("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: curl\n")
    assert applied(store, account, namespace="shop") == ["serviceaccount/curl created"]
    assert store.find("sa", "shop", "curl") is not None
    assert store.find("sa", "default", "curl") is None
    elsewhere = yaml(BOOKINFO_REVIEWS)
    with pytest.raises(IstiolabError, match="does not match the namespace"):
        store.apply(elsewhere, namespace="shop")


def test_deployment_selector_must_match_and_never_change(state: Path) -> None:
    store = Store.load(state)
    mismatch = deployment(template_labels="").documents[0]
    mismatch.data["spec"]["selector"]["matchLabels"]["version"] = "v2"
    result = store.apply([mismatch])
    assert not result.ok
    assert "`selector` does not match template `labels`" in format_report(result.report)
    applied(store, yaml(BOOKINFO_REVIEWS))
    changed = deployment(template_labels=", tier: web").documents[0]
    changed.data["spec"]["selector"]["matchLabels"]["tier"] = "web"
    result = store.apply([changed])
    assert not result.ok
    assert "spec.selector: Invalid value" in format_report(result.report)
    assert "field is immutable" in format_report(result.report)


def test_kinds_the_sandbox_does_not_run_are_refused(state: Path) -> None:
    store = Store.load(state)
    result = store.apply(
        yaml(
            """
            apiVersion: v1
            kind: Pod
            metadata: {name: lonely}
            spec:
              containers:
                - name: app
                  image: istiolab/examples-bookinfo-details-v1:0.1.0
            """
        )
    )
    assert not result.ok
    assert result.report.codes() == [SANDBOX_UNSUPPORTED]
    assert "Deployment" in result.report.errors[0].fix


@pytest.mark.parametrize(
    ("resource", "field", "reason"),
    [
        (
            """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: ext-authz, namespace: default}
            spec:
              action: CUSTOM
              provider: {name: my-ext-authz}
              rules: [{to: [{operation: {paths: [/admin]}}]}]
            """,
            "spec",
            "external authorizer",
        ),
        (
            """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: jwt-only, namespace: default}
            spec:
              rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
            """,
            "spec",
            "requestPrincipals",
        ),
        (
            """
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: {name: mesh-default, namespace: istio-system}
            spec:
              tracing: [{providers: [{name: jaeger}]}]
            """,
            "spec.tracing",
            '"jaeger"',
        ),
        (
            """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: external, namespace: default}
            spec:
              host: reviews
              trafficPolicy: {tls: {mode: MUTUAL, credentialName: client-cert}}
            """,
            "spec.trafficPolicy.tls.credentialName",
            "Secret",
        ),
    ],
)
def test_istio_features_the_sandbox_mesh_lacks_are_refused_with_the_reason(
    state: Path, resource: str, field: str, reason: str
) -> None:
    result = Store.load(state).apply(yaml(resource))

    assert not result.ok
    [refusal] = [f for f in result.report.errors if f.code == SANDBOX_UNSUPPORTED]
    assert reason in refusal.message
    assert field in format_report(result.report)


def test_istio_and_gateway_api_kinds_print_their_groups(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    lines = applied(
        store,
        yaml(
            """
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {name: default, namespace: istio-system}
            spec:
              mtls: {mode: STRICT}
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
            apiVersion: gateway.networking.k8s.io/v1
            kind: Gateway
            metadata: {name: bookinfo-gateway}
            spec:
              gatewayClassName: istio
              listeners:
                - name: http
                  port: 80
                  protocol: HTTP
            ---
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: {name: mesh-default, namespace: istio-system}
            spec:
              tracing:
                - randomSamplingPercentage: 100.0
            """
        ),
    )
    assert lines == [
        "peerauthentication.security.istio.io/default created",
        "gateway.networking.istio.io/bookinfo-gateway created",
        "gateway.gateway.networking.k8s.io/bookinfo-gateway created",
        "telemetry.telemetry.istio.io/mesh-default created",
    ]
    # Same kind and name, two groups: two objects, told apart like kubectl does.
    assert [o.group for o in store.get("gw")] == ["networking.istio.io"]
    assert [o.group for o in store.get("gateway")] == ["gateway.networking.k8s.io"]
    assert [o.group for o in store.get("gateways.networking.istio.io")] == ["networking.istio.io"]


# --------------------------------------------------------------------------------------------
# get, delete, label


@pytest.mark.parametrize(
    ("alias", "kind", "group"),
    [
        ("vs", "VirtualService", "networking.istio.io"),
        ("virtualservice", "VirtualService", "networking.istio.io"),
        ("virtualservices", "VirtualService", "networking.istio.io"),
        ("VirtualService", "VirtualService", "networking.istio.io"),
        ("virtualservices.networking.istio.io", "VirtualService", "networking.istio.io"),
        ("dr", "DestinationRule", "networking.istio.io"),
        ("gw", "Gateway", "networking.istio.io"),
        ("gtw", "Gateway", "gateway.networking.k8s.io"),
        ("deploy", "Deployment", "apps"),
        ("deployments.apps", "Deployment", "apps"),
        ("deployments.v1.apps", "Deployment", "apps"),
        ("svc", "Service", ""),
        ("ns", "Namespace", ""),
        ("sa", "ServiceAccount", ""),
        ("pa", "PeerAuthentication", "security.istio.io"),
        ("ap", "AuthorizationPolicy", "security.istio.io"),
        ("se", "ServiceEntry", "networking.istio.io"),
        ("po", "Pod", ""),
        ("pods", "Pod", ""),
    ],
)
def test_kubectl_aliases_resolve(alias: str, kind: str, group: str) -> None:
    resource_type = resolve(alias)
    assert (resource_type.kind, resource_type.group) == (kind, group)


def test_get_lists_and_finds(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    assert [o.name for o in store.get("svc")] == ["reviews"]
    assert [o.name for o in store.get("svc", "default")] == ["reviews"]
    assert store.get("svc", "kube-system") == []
    assert {o.name for o in store.get("namespaces")} >= {"default", "istio-system", "kube-system"}
    (reviews,) = store.get("deployment", name="reviews-v1")
    manifest = reviews.manifest()
    assert manifest["metadata"]["generation"] == 1
    assert manifest["metadata"]["resourceVersion"] == str(store.revision)
    with pytest.raises(IstiolabError, match="the registry runs them"):
        store.get("po")
    with pytest.raises(IstiolabError, match='doesn\'t have a resource type "virtualservise"'):
        store.get("virtualservise")


def test_delete_and_not_found(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    with pytest.raises(NotFoundError) as caught:
        store.delete("deploy", "default", "reviews-v9")
    assert caught.value.message == (
        'Error from server (NotFound): deployments.apps "reviews-v9" not found'
    )
    with pytest.raises(NotFoundError, match=r'virtualservices.networking.istio.io "nope"'):
        store.get("vs", "default", "nope")
    revision = store.revision
    assert store.delete("svc", "default", "reviews") == 'service "reviews" deleted'
    assert store.revision == revision + 1
    result = store.delete_documents(yaml(BOOKINFO_REVIEWS, "reviews.yaml"))
    assert sorted(result.lines) == [
        'deployment.apps "reviews-v1" deleted',
        'serviceaccount "bookinfo-reviews" deleted',
    ]
    assert result.errors == [
        'Error from server (NotFound): error when deleting "reviews.yaml": services "reviews" '
        "not found"
    ]
    assert store.delete_documents(yaml(BOOKINFO_REVIEWS), ignore_not_found=True).ok


def test_deleting_a_namespace_deletes_what_is_in_it(state: Path) -> None:
    store = Store.load(state)
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n"
    applied(store, yaml(namespace + BOOKINFO_REVIEWS.replace("default", "shop")))
    assert store.delete("ns", None, "shop") == 'namespace "shop" deleted'
    assert store.get("deploy") == []
    with pytest.raises(IstiolabError, match="may not be deleted"):
        store.delete("ns", None, "default")


def test_label_sets_removes_and_needs_overwrite(state: Path) -> None:
    store = Store.load(state)
    result = store.label("ns", None, "default", ["istio-injection=enabled"])
    assert (result.line, result.changed) == ("namespace/default labeled", True)
    again = store.label("namespace", None, "default", {"istio-injection": "enabled"})
    assert (again.line, again.changed) == ("namespace/default not labeled", False)
    with pytest.raises(IstiolabError, match=r"'istio-injection' already has a value \(enabled\)"):
        store.label("ns", None, "default", ["istio-injection=disabled"])
    store.label("ns", None, "default", ["istio-injection=disabled"], overwrite=True)
    assert store.get("ns", name="default")[0].labels["istio-injection"] == "disabled"
    removed = store.label("ns", None, "default", ["istio-injection-", "missing-"])
    assert removed.changed and removed.warnings == ['label "missing" not found.']
    assert "istio-injection" not in store.get("ns", name="default")[0].labels
    with pytest.raises(IstiolabError, match="invalid label value"):
        store.label("ns", None, "default", ["team=not ok"])
    with pytest.raises(NotFoundError, match='namespaces "nope" not found'):
        store.label("ns", None, "nope", ["a=b"])


def test_a_hand_set_label_survives_reapplying_its_namespace(state: Path) -> None:
    store = Store.load(state)
    namespace = yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n")
    applied(store, namespace)
    store.label("ns", None, "shop", ["istio-injection=enabled"])
    assert applied(store, namespace) == ["namespace/shop unchanged"]
    assert store.get("ns", name="shop")[0].labels["istio-injection"] == "enabled"
    disabled = yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
        "  labels: {istio-injection: disabled}\n"
    )
    assert applied(store, disabled) == ["namespace/shop configured"]
    assert store.get("ns", name="shop")[0].labels["istio-injection"] == "disabled"
    assert applied(store, namespace) == ["namespace/shop configured"]  # the file dropped it
    assert "istio-injection" not in store.get("ns", name="shop")[0].labels


# --------------------------------------------------------------------------------------------
# Injection and restarts


@needs_kubectl
def test_injection_waits_for_a_restart(bookinfo: tuple[Store, Registry]) -> None:
    store, registry = bookinfo
    before = registry.pods
    store.label("ns", None, "default", ["istio-injection=enabled"])
    assert not registry.reconcile(store).changed
    assert registry.pods == before
    assert all(p.sidecar is None for p in registry.pods)

    lines = store.rollout_restart("default")
    assert sorted(lines) == sorted(f"deployment.apps/{name} restarted" for name in DEPLOYMENTS)
    stamp = store.get("deploy", name="reviews-v1")[0].spec["template"]["metadata"]["annotations"]
    assert RESTARTED_AT in stamp
    result = registry.reconcile(store)
    assert sorted(p.name for p in result.deleted) == sorted(p.name for p in before)
    assert len(result.created) == 6
    assert not {p.name for p in result.created} & {p.name for p in before}
    ports = []
    for pod in registry.pods:
        assert pod.sidecar is not None
        assert pod.endpoint_port == pod.sidecar.inbound_port
        assert pod.labels["security.istio.io/tlsMode"] == "istio"
        assert pod.labels["service.istio.io/canonical-name"] == pod.labels["app"]
        assert pod.labels["service.istio.io/canonical-revision"] == pod.labels["version"]
        ports += [pod.app_port, *vars(pod.sidecar).values()]
    assert len(ports) == len(set(ports)) == 24
    assert "istio-injection=enabled" in registry.record("default", pod.name).injection


@needs_kubectl
def test_restart_one_deployment(bookinfo: tuple[Store, Registry]) -> None:
    store, registry = bookinfo
    others = {p.name for p in registry.pods if p.deployment != "ratings-v1"}
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    assert store.rollout_restart("default", "ratings-v1", now=moment) == [
        "deployment.apps/ratings-v1 restarted"
    ]
    store.rollout_restart("default", "ratings-v1", now=moment)  # same second: still a change
    result = registry.reconcile(store)
    assert [p.deployment for p in result.created] == ["ratings-v1"]
    assert {p.name for p in registry.pods} - {result.created[0].name} == others
    with pytest.raises(NotFoundError, match=r'deployments\.apps "nope" not found'):
        store.rollout_restart("default", "nope")


def test_pod_template_annotation_opts_out(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    store.label("ns", None, "default", ["istio-injection=enabled"])
    applied(store, deployment(template_annotations=', sidecar.istio.io/inject: "false"'))
    registry = Registry(state)
    (pod,) = registry.reconcile(store).created
    assert pod.sidecar is None
    assert (
        'annotation sidecar.istio.io/inject: "false"'
        in registry.record("default", pod.name).injection
    )


def test_pod_template_label_opts_in_and_annotation_does_not(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    applied(store, deployment(template_labels=', sidecar.istio.io/inject: "true"'))
    registry = Registry(state)
    (pod,) = registry.reconcile(store).created
    assert pod.sidecar is not None
    applied(store, deployment(template_annotations=', sidecar.istio.io/inject: "true"'))
    (replaced,) = registry.reconcile(store).created
    assert replaced.sidecar is None


@pytest.mark.parametrize(
    ("namespace_labels", "pod_labels", "pod_annotations", "injected"),
    [
        ({}, {}, {}, False),
        ({"istio-injection": "enabled"}, {}, {}, True),
        ({"istio-injection": "disabled"}, {}, {}, False),
        ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, {}, False),
        ({"istio-injection": "enabled"}, {}, {"sidecar.istio.io/inject": "false"}, False),
        ({"istio-injection": "enabled"}, {}, {"sidecar.istio.io/inject": "no"}, False),
        ({"istio-injection": "enabled"}, {}, {"sidecar.istio.io/inject": "True"}, True),
        # The label is the newer API and wins over the annotation.
        (
            {"istio-injection": "enabled"},
            {"sidecar.istio.io/inject": "true"},
            {"sidecar.istio.io/inject": "false"},
            True,
        ),
        ({}, {"sidecar.istio.io/inject": "true"}, {}, True),
        ({}, {}, {"sidecar.istio.io/inject": "true"}, False),
        ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, {}, False),
        ({"istio.io/rev": "default"}, {}, {}, True),
        ({"istio.io/rev": "canary"}, {}, {}, False),
        ({}, {"istio.io/rev": "default"}, {}, True),
        ({}, {"istio.io/rev": "default", "sidecar.istio.io/inject": "false"}, {}, False),
    ],
)
def test_injection_follows_istios_default_webhook(
    namespace_labels: dict[str, str],
    pod_labels: dict[str, str],
    pod_annotations: dict[str, str],
    injected: bool,
) -> None:
    decision = injection_decision("default", namespace_labels, pod_labels, pod_annotations)
    assert decision.injected is injected, decision.reason
    assert decision.reason.startswith("sidecar injected" if injected else "no sidecar")


def test_injection_never_in_system_namespaces_or_host_network() -> None:
    enabled = {"istio-injection": "enabled"}
    assert not injection_decision("kube-system", enabled, {}).injected
    assert not injection_decision("default", enabled, {}, host_network=True).injected


# --------------------------------------------------------------------------------------------
# Replicas, deletion, persistence


def test_scaling_keeps_the_oldest_pods(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    applied(store, deployment())
    registry = Registry(state)
    (first,) = registry.reconcile(store).created
    applied(store, deployment(replicas=3))
    result = registry.reconcile(store)
    assert len(result.created) == 2 and not result.deleted
    assert registry.pods[0].name == first.name
    assert len({p.labels["pod-template-hash"] for p in registry.pods}) == 1
    applied(store, deployment(replicas=1))
    result = registry.reconcile(store)
    assert not result.created
    assert sorted(p.name for p in result.deleted) == sorted(
        p.name for p in registry.pods_in() + result.deleted if p.name != first.name
    )
    assert [p.name for p in registry.pods] == [first.name]
    applied(store, deployment(replicas=0))
    registry.reconcile(store)
    assert registry.pods == ()


def test_deleting_a_deployment_deletes_its_pods_and_frees_their_ports(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    registry = Registry(state)
    (pod,) = registry.reconcile(store).created
    assert registry.ports.port_of(f"default/{pod.name}/app") == pod.app_port
    store.delete("deployment", "default", "reviews-v1")
    result = registry.reconcile(store)
    assert result.deleted == [pod]
    assert registry.pods == ()
    assert registry.ports.owners == {}


def test_a_deleted_pod_is_replaced(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    registry = Registry(state)
    (pod,) = registry.reconcile(store).created
    assert registry.delete_pod("default", pod.name) == f'pod "{pod.name}" deleted'
    assert Registry(state).pods == ()
    (replacement,) = registry.reconcile(store).created
    assert replacement.name != pod.name
    assert replacement.labels["pod-template-hash"] == pod.labels["pod-template-hash"]
    with pytest.raises(IstiolabError, match=f'pods "{pod.name}" not found'):
        registry.delete_pod("default", pod.name)


def test_a_missing_service_account_is_a_warning_and_no_pods(state: Path) -> None:
    store = Store.load(state)
    loaded = yaml(BOOKINFO_REVIEWS.split("---")[1] + "---" + BOOKINFO_REVIEWS.split("---")[2])
    result = store.apply(loaded)
    assert result.ok
    assert [f.code for f in result.report.warnings] == ["IST0101"]
    assert 'serviceaccount "bookinfo-reviews" not found' in result.report.warnings[0].message
    reconciled = Registry().reconcile(store)
    assert reconciled.created == []
    assert 'serviceaccount "bookinfo-reviews" not found' in reconciled.problems[0]


@needs_kubectl
def test_state_survives_a_control_plane_restart(
    bookinfo: tuple[Store, Registry], state: Path
) -> None:
    store, registry = bookinfo
    store.label("ns", None, "default", ["istio-injection=enabled"])
    store.rollout_restart("default", "productpage-v1")
    registry.reconcile(store)
    applied(store, yaml(DESTINATION_RULE))

    store_again = Store.load(state)
    registry_again = Registry.load(state)
    assert store_again.revision == store.revision
    assert [o.manifest() for o in store_again.objects()] == [o.manifest() for o in store.objects()]
    assert registry_again.pods == registry.pods
    assert registry_again.ports.owners == registry.ports.owners
    assert not registry_again.reconcile(store_again).changed
    (productpage,) = registry_again.pods_in("default", "productpage-v1")
    assert productpage.sidecar is not None
    assert registry_again.launch(productpage) == registry.launch(productpage)
    # And the restored store keeps validating against what was applied.
    assert applied(store_again, yaml(virtual_service(subset="v2"))) == [
        "virtualservice.networking.istio.io/reviews created"
    ]


def test_pods_keep_their_ports_when_ports_json_is_lost(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    (pod,) = Registry(state).reconcile(store).created
    (state / "ports.json").unlink()
    registry = Registry(state)
    assert registry.ports.port_of(f"default/{pod.name}/app") == pod.app_port
    applied(store, deployment(name="reviews-v2", version="v2"))
    (other,) = registry.reconcile(store).created
    assert other.app_port != pod.app_port


def test_a_broken_state_file_is_a_clear_error(state: Path) -> None:
    state.mkdir()
    (state / "resources.json").write_text("{not json")
    with pytest.raises(IstiolabError) as caught:
        Store.load(state)
    assert "resources.json" in caught.value.message and "delete" in caught.value.fix


# --------------------------------------------------------------------------------------------
# Images and launching


@pytest.mark.parametrize(
    ("image", "service", "version"),
    [
        ("docker.io/istio/examples-bookinfo-reviews-v3:1.20.3", "reviews", "v3"),
        ("istio/examples-bookinfo-details-v2:1.20.3", "details", "v2"),
        ("registry.istio.io/release/examples-bookinfo-productpage-v1:1.30.0", "productpage", "v1"),
        ("istiolab/examples-bookinfo-ratings-v-faulty:0.1.0", "ratings", "v-faulty"),
        ("docker.io/istio/examples-bookinfo-productpage-v-flooding", "productpage", "v-flooding"),
        (
            "istiolab/examples-bookinfo-reviews-v2:0.1.0@sha256:" + "0" * 64,
            "reviews",
            "v2",
        ),
    ],
)
def test_bookinfo_images_map_to_their_variant(image: str, service: str, version: str) -> None:
    parsed = parse_image(image)
    assert (parsed.service, parsed.version) == (service, version)
    assert parsed.variant == variants.find(service, version)


def test_the_pinned_image_prefix_is_accepted() -> None:
    prefix = versions.get("BOOKINFO_IMAGE_PREFIX")
    assert prefix.endswith("examples-bookinfo-")
    assert prefix.removesuffix("examples-bookinfo-") in IMAGE_REPOSITORIES
    assert parse_image(versions.bookinfo_image("reviews", "v3")).version == "v3"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("curlimages/curl:8.22.0", "the sandbox runs Bookinfo's images only: curlimages/curl"),
        ("nginx", "the sandbox runs Bookinfo's images only: nginx is not one"),
        ("docker.io/istio/examples-bookinfo-mongodb:1.20.3", "Bookinfo's services are"),
        ("docker.io/istio/examples-bookinfo-ratings-v2:1.20.3", "ratings has no version 'v2'"),
    ],
)
def test_foreign_images_are_refused_at_apply(state: Path, image: str, message: str) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    result = store.apply(deployment(image=image))
    assert not result.ok
    (error,) = result.report.errors
    assert error.code == SANDBOX_UNSUPPORTED
    assert message in error.message
    assert error.path == "spec.template.spec.containers[0].image"
    assert error.file == "reviews-v1.yaml" and error.line
    assert (
        store.get("deploy", name="reviews-v1")[0]
        .spec["template"]["spec"]["containers"][0]["image"]
        .startswith("istiolab/")
    )


def test_what_the_sandbox_would_run_differently_is_refused(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    loaded = deployment()
    container = loaded.documents[0].data["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["sleep", "infinity"]
    container["env"] = [
        {"name": "FROM_CONFIG", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}
    ]
    result = store.apply(loaded)
    assert sorted(f.path for f in result.report.errors) == [
        "spec.template.spec.containers[0].command",
        "spec.template.spec.containers[0].env[0].valueFrom",
    ]
    two = deployment()
    two.documents[0].data["spec"]["template"]["spec"]["containers"].append(
        {"name": "helper", "image": "istiolab/examples-bookinfo-details-v1:0.1.0"}
    )
    result = store.apply(two)
    assert "one container per pod" in format_report(result.report)


def test_app_launch_runs_the_variant_with_the_pods_environment(state: Path) -> None:
    store = Store.load(state)
    applied(store, yaml(BOOKINFO_REVIEWS))
    loaded = deployment(
        name="reviews-v3", version="v3", image="docker.io/istio/examples-bookinfo-reviews-v3:1.20.3"
    )
    container = loaded.documents[0].data["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "STAR_COLOR", "value": "blue"},
        {"name": "LOG_DIR", "value": "/tmp/$(STAR_COLOR)/$$(KEPT)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
    ]
    applied(store, loaded)
    registry = Registry(state)
    registry.reconcile(store)
    (pod,) = registry.pods_in("default", "reviews-v3")
    launch = registry.launch(pod)
    assert launch.command == (
        sys.executable,
        "-m",
        "bookinfo",
        "serve",
        "reviews",
        "--host",
        "127.0.0.1",
        "--port",
        str(pod.app_port),
    )
    assert dict(launch.env) == {
        "SERVICE_VERSION": "v3",
        "ENABLE_RATINGS": "true",
        "STAR_COLOR": "blue",  # the Deployment's env wins over the image's
        "HOSTNAME": pod.name,
        "LOG_DIR": "/tmp/blue/$(KEPT)",
        "POD": pod.name,
        "APP": "reviews",
    }
    assert not any(name.endswith("_SERVICE_PORT") for name in launch.env)
    proxied = launch.with_proxy("http://127.0.0.1:20001").environment(
        {"PATH": "/usr/bin", "NO_PROXY": "*"}
    )
    assert proxied["HTTP_PROXY"] == proxied["http_proxy"] == "http://127.0.0.1:20001"
    assert "NO_PROXY" not in proxied and proxied["PATH"] == "/usr/bin"
    manifest = registry.pod_manifest(pod)
    assert manifest["metadata"]["name"] == pod.name
    assert [c["name"] for c in manifest["spec"]["containers"]] == ["reviews"]


# --------------------------------------------------------------------------------------------
# Ports


def test_ports_skip_what_is_in_use_and_stay_with_their_owner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if port + 20 > 65535:
            pytest.skip("the OS gave a port at the very top of the range")
        allocator = PortAllocator(port, port + 20, state_dir=tmp_path)
        first = allocator.allocate("default/a/app")
        assert first != port
        assert allocator.allocate("default/a/app") == first
        second = allocator.allocate("default/b/app")
        assert second not in (port, first)
        allocator.release("default/a/app")
        assert allocator.allocate("default/c/app") not in (port, first, second)
        allocator.save()
    again = PortAllocator(port, port + 20, state_dir=tmp_path)
    assert again.port_of("default/b/app") == second


def test_an_exhausted_range_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        allocator = PortAllocator(port, port)
        with pytest.raises(IstiolabError, match=f"no free port left in the sandbox's range {port}"):
            allocator.allocate("default/a/app")


# --------------------------------------------------------------------------------------------
# -f and -k


def test_load_documents_reads_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BOOKINFO_REVIEWS)
    (tmp_path / "b.json").write_text(
        '{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "extra"}}'
    )
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.yaml").write_text(DESTINATION_RULE)
    flat = load_documents([tmp_path])
    assert [d.kind for d in flat.documents] == [
        "ServiceAccount",
        "Service",
        "Deployment",
        "ServiceAccount",
    ]
    assert "DestinationRule" in [
        d.kind for d in load_documents([tmp_path], recursive=True).documents
    ]
    with pytest.raises(IstiolabError, match="does not exist"):
        load_documents([tmp_path / "missing.yaml"])
    with pytest.raises(IstiolabError, match=r"unable to find one of 'kustomization\.yaml'"):
        load_documents(kustomize_dirs=[tmp_path])
    piped = load_documents(["-"], stdin=DESTINATION_RULE)
    assert [d.file for d in piped.documents] == ["<stdin>"]


def test_kustomize_without_kubectl_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(IstiolabError) as caught:
        load_documents(kustomize_dirs=[STAGE_00])
    assert "kubectl" in caught.value.message and "install kubectl" in caught.value.fix


@needs_kubectl
def test_kustomize_builds_like_apply_k(stage_00: Loaded) -> None:
    assert {d.kind for d in stage_00.documents} == {"ServiceAccount", "Service", "Deployment"}
    assert all(d.namespace == "default" for d in stage_00.documents)
    assert stage_00.documents[0].file.endswith("(kubectl kustomize)")


# Istio's bookinfo.yaml for reviews, cut to one version: a ServiceAccount, Service, Deployment.
BOOKINFO_REVIEWS = """
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bookinfo-reviews
  namespace: default
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
  labels: {app: reviews, service: reviews}
spec:
  ports:
    - port: 9080
      name: http
  selector:
    app: reviews
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  namespace: default
  labels: {app: reviews, version: v1}
spec:
  replicas: 1
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels: {app: reviews, version: v1}
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
        - name: reviews
          image: istiolab/examples-bookinfo-reviews-v1:0.1.0
          ports:
            - containerPort: 9080
              name: http
"""
