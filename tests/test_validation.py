"""Offline validation (istiolab.validation and `istiolab validate`).

Every finding code has a case that triggers it; Istio's own Bookinfo routing samples (written out
in tests/bookinfo_samples.py) validate clean against a base Bookinfo; and every YAML file the
repository ships under manifests/ (and labs/, once it exists) passes the command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bookinfo_samples import (
    BOOKINFO,
    BOOKINFO_GATEWAY,
    DESTINATION_RULE_ALL,
    RATINGS_TEST_DELAY,
    REVIEWS_50_V3,
    REVIEWS_SUBSETS,
    REVIEWS_TEST_V2,
    VIRTUAL_SERVICE_ALL_V1,
)
from istiolab import cli
from istiolab.commands import validate as validate_command
from istiolab.errors import IstiolabError
from istiolab.validation import (
    CODES,
    NO_ISSUES,
    Report,
    Severity,
    format_report,
    load_text,
    schemas,
    validate_documents,
    validate_paths,
    validate_text,
)

REPO = Path(__file__).resolve().parent.parent
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="needs kubectl (kubectl kustomize)"
)

# Istio's samples/bookinfo/networking files.
SAMPLES = {
    "destination-rule-all": DESTINATION_RULE_ALL,
    "virtual-service-all-v1": VIRTUAL_SERVICE_ALL_V1,
    "virtual-service-reviews-test-v2": REVIEWS_TEST_V2,
    "virtual-service-reviews-50-v3": REVIEWS_50_V3,
    "virtual-service-ratings-test-delay": RATINGS_TEST_DELAY,
    "bookinfo-gateway": BOOKINFO_GATEWAY,
}


# Valid Istio, with the fields istio.io's tasks use: strictness must reject none of it.
ISTIO_FEATURES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: everything}
spec:
  hosts: [reviews]
  gateways: [mesh]
  exportTo: ["."]
  http:
    - name: jason
      match:
        - headers:
            end-user: {exact: jason}
          queryParams:
            v: {regex: "^[0-9]+$"}
          ignoreUriCase: true
          sourceLabels: {app: productpage}
          uri: {prefix: /reviews}
          method: {exact: GET}
      rewrite: {uri: /v2/reviews}
      headers:
        request:
          set: {x-canary: "true"}
          add: {x-added: "1"}
          remove: [x-legacy]
        response:
          set: {x-served-by: reviews}
      route:
        - destination: {host: reviews, subset: v2, port: {number: 9080}}
          weight: 100
          headers:
            response:
              add: {x-subset: v2}
      timeout: 0.5s
      retries:
        attempts: 3
        perTryTimeout: 2s
        retryOn: gateway-error,connect-failure,refused-stream
      fault:
        abort:
          httpStatus: 500
          percentage: {value: 10}
        delay:
          fixedDelay: 7s
          percentage: {value: 100.0}
      mirror: {host: reviews, subset: v3}
      mirrorPercentage: {value: 50.0}
      corsPolicy:
        allowOrigins:
          - exact: https://example.com
        allowMethods: [GET, POST]
        allowHeaders: [x-custom]
        maxAge: 24h
        allowCredentials: false
    - match:
        - uri: {exact: /old}
      redirect:
        uri: /new
        redirectCode: 301
    - directResponse:
        status: 503
        body:
          string: "unavailable"
    - route:
        - destination: {host: reviews, subset: v1}
          weight: 90
        - destination: {host: reviews, subset: v3}
          weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-policy}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 30ms}
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
        idleTimeout: 30s
        h2UpgradePolicy: UPGRADE
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
      - port: {number: 9080}
        loadBalancer: {simple: LEAST_REQUEST}
  subsets:
    - name: v1
      labels: {version: v1}
      trafficPolicy:
        loadBalancer:
          localityLbSetting: {enabled: true}
    - name: v2
      labels: {version: v2}
    - name: v3
      labels: {version: v3}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: secure}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 8443, name: https, protocol: HTTPS}
      hosts: [bookinfo.example.com]
      tls: {mode: SIMPLE, credentialName: bookinfo-credential}
    - port: {number: 8080, name: http, protocol: HTTP}
      hosts: ["*"]
      tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
    - {number: 80, name: http, protocol: HTTP}
    - {number: 443, name: tls, protocol: TLS}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules:
    - from:
        - source:
            notPrincipals: [cluster.local/ns/default/sa/bookinfo-reviews]
            namespaces: [default]
      to:
        - operation: {methods: [POST], paths: ["/ratings/*"]}
      when:
        - key: request.auth.claims[groups]
          values: [admin]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
    - issuer: testing@secure.istio.io
      jwksUri: https://raw.githubusercontent.com/istio/istio/release-1.30/security/tools/jwt/samples/jwks.json
      forwardOriginalToken: true
      outputPayloadToHeader: x-jwt-payload
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ratings}
spec:
  selector: {matchLabels: {app: ratings}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    9080: {mode: STRICT}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs}
spec:
  accessLogging:
    - providers: [{name: envoy}]
      filter: {expression: "response.code >= 400"}
  metrics:
    - providers: [{name: prometheus}]
      overrides:
        - match: {metric: REQUEST_COUNT, mode: CLIENT_AND_SERVER}
          tagOverrides:
            request_host: {operation: REMOVE}
  tracing:
    - randomSamplingPercentage: 100
      customTags:
        env: {literal: {value: lab}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
  egress:
    - hosts: ["./*", "istio-system/*"]
"""


@pytest.fixture(scope="module", autouse=True)
def schema_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Built Istio schemas go to a directory of the test run, not the user's cache."""
    directory = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("ISTIOLAB_CACHE_DIR")
    os.environ["ISTIOLAB_CACHE_DIR"] = str(directory)
    # Another module in this process may already have built (and memoised) the schemas before
    # the cache directory was set: start from nothing, so this module sees them built here.
    schemas.schema_for.cache_clear()
    yield directory
    if saved is None:
        del os.environ["ISTIOLAB_CACHE_DIR"]
    else:
        os.environ["ISTIOLAB_CACHE_DIR"] = saved


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def write_file(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write_file


@pytest.fixture
def base(write: Callable[[str, str], Path]) -> Path:
    return write("base/bookinfo.yaml", BOOKINFO)


def check(
    write: Callable[[str, str], Path], base: Path, text: str, *extra: str, name: str = "x.yaml"
) -> Report:
    paths = [write(name, text)] + [write(f"extra{i}.yaml", t) for i, t in enumerate(extra)]
    return validate_paths(paths, known=[base])


def only(report: Report, code: str):
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, format_report(report)
    return found[0]


# --- the clean case and Istio's own samples ---------------------------------------------------


def test_bookinfo_base_is_clean(base: Path) -> None:
    report = validate_paths([base])
    assert report.findings == [], format_report(report)
    assert len(report.resources) == 10
    assert format_report(report) == NO_ISSUES


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_istio_bookinfo_samples_validate_clean(
    sample: str, write: Callable[[str, str], Path], base: Path
) -> None:
    texts = [SAMPLES[sample]]
    if sample != "destination-rule-all" and sample != "bookinfo-gateway":
        texts.append(DESTINATION_RULE_ALL)  # every routing task applies it first
    report = check(write, base, *texts)
    assert report.ok, format_report(report)
    # Only Istio's destination-rule-all.yaml names versions the base Bookinfo does not deploy.
    unselected = sorted(f.message.split()[2] for f in report.findings)
    assert all(f.code == "IST0173" for f in report.findings), format_report(report)
    if DESTINATION_RULE_ALL in texts:
        assert unselected == ["v2", "v2", "v2-mysql", "v2-mysql-vm"]
    else:
        assert unselected == []


def test_istio_fields_from_the_task_docs_are_accepted(
    write: Callable[[str, str], Path], base: Path
) -> None:
    """Strictness must not reject valid Istio: the fields istio.io's tasks use, in one set."""
    report = check(write, base, ISTIO_FEATURES)
    assert report.findings == [], format_report(report)


# --- IST0101 ReferencedResourceNotFound -------------------------------------------------------


def test_missing_subset_is_reported_like_istioctl(
    write: Callable[[str, str], Path], base: Path
) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: reviews
    spec:
      hosts:
        - reviews
      http:
        - route:
            - destination:
                host: reviews
                subset: v4
    """
    report = check(write, base, vs, REVIEWS_SUBSETS)
    finding = only(report, "IST0101")
    file = str(write("x.yaml", vs))
    assert finding.heading() == (
        f"Error [IST0101] (VirtualService default/reviews {file}:12) "
        'Referenced host+subset in destinationrule not found: "reviews+v4"'
    )
    assert finding.path == "spec.http[0].route[0].destination.subset"
    assert "defines subsets v1, v2, v3" in finding.fix
    assert not report.ok
    text = format_report(report)
    assert "  field: spec.http[0].route[0].destination.subset" in text
    assert "  fix: DestinationRule default/reviews defines subsets" in text


def test_missing_mirror_subset(write: Callable[[str, str], Path], base: Path) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: reviews
    spec:
      hosts: [reviews]
      http:
        - route:
            - destination: {host: reviews, subset: v1}
          mirror: {host: reviews, subset: v9}
    """
    finding = only(check(write, base, vs, REVIEWS_SUBSETS), "IST0101")
    assert finding.message == (
        'Referenced mirror+subset in destinationrule not found: "reviews+v9"'
    )
    assert finding.path == "spec.http[0].mirror.subset"


def test_missing_host(write: Callable[[str, str], Path], base: Path) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: reviews
    spec:
      hosts: [reviews]
      http:
        - route:
            - destination:
                host: reviewz
    """
    finding = only(check(write, base, vs), "IST0101")
    assert finding.message == 'Referenced host not found: "reviewz"'
    assert finding.fix.startswith('Did you mean "reviews"?')


@pytest.mark.parametrize(
    ("host", "found"),
    [
        ("reviews.default.svc.cluster.local", True),
        ("reviews.other.svc.cluster.local", False),
        ("reviews.default", False),  # Istio takes a name with a dot as written
        ("www.googleapis.com", True),  # a ServiceEntry host
    ],
)
def test_host_resolution(
    host: str, found: bool, write: Callable[[str, str], Path], base: Path
) -> None:
    vs = f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: r
    spec:
      hosts: [reviews]
      http:
        - route:
            - destination:
                host: {host}
    """
    entry = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata:
      name: googleapis
    spec:
      hosts: [www.googleapis.com]
      ports:
        - number: 443
          name: https
          protocol: HTTPS
      resolution: DNS
      location: MESH_EXTERNAL
    """
    report = check(write, base, vs, entry)
    assert report.ok is found, format_report(report)


def test_missing_gateway(write: Callable[[str, str], Path], base: Path) -> None:
    vs = BOOKINFO_GATEWAY.split("---")[1].replace("- bookinfo-gateway", "- bookinfo-gw")
    finding = only(check(write, base, vs), "IST0101")
    assert finding.message == 'Referenced gateway not found: "bookinfo-gw"'
    assert finding.path == "spec.gateways[0]"


def test_gateway_in_another_namespace(write: Callable[[str, str], Path], base: Path) -> None:
    gateway, vs = BOOKINFO_GATEWAY.split("---")
    gateway = gateway.replace("name: bookinfo-gateway", "name: shared\n  namespace: istio-system")
    vs = vs.replace("- bookinfo-gateway", "- istio-system/shared\n  - mesh")
    assert check(write, base, gateway, vs).ok


def test_gateway_selector_not_found(write: Callable[[str, str], Path], base: Path) -> None:
    gateway = BOOKINFO_GATEWAY.split("---")[0].replace("ingressgateway", "ingress-gateway")
    finding = only(check(write, base, gateway), "IST0101")
    assert finding.message == 'Referenced selector not found: "istio=ingress-gateway"'
    assert "istio: ingressgateway" in finding.fix


# --- ISTL0001 weights ------------------------------------------------------------------------


def test_weights_must_add_up_to_100(write: Callable[[str, str], Path], base: Path) -> None:
    vs = REVIEWS_50_V3.replace("weight: 50", "weight: 80", 1).replace("weight: 50", "weight: 30")
    report = check(write, base, vs, REVIEWS_SUBSETS)
    finding = only(report, "ISTL0001")
    assert finding.message == "Route weights add up to 110, not 100: reviews v1 80, reviews v3 30"
    assert finding.path == "spec.http[0].route"
    assert CODES["ISTL0001"].origin == "istiolab"
    assert not report.ok


# --- IST0106 SchemaValidationError -----------------------------------------------------------


def test_unknown_field_in_a_deployment_is_rejected(
    write: Callable[[str, str], Path], base: Path
) -> None:
    deployment = BOOKINFO.split("---")[5].replace(
        "imagePullPolicy: IfNotPresent",
        "imagePullPolicy: IfNotPresent\n          imagePull: Always",
    )
    finding = only(check(write, base, deployment), "IST0106")
    assert finding.message == (
        'Schema validation error: unknown field "spec.template.spec.containers[0].imagePull"'
    )
    assert finding.resource == "Deployment default/details-v1"
    assert 'Did you mean "imagePullPolicy"?' in finding.fix


def test_unknown_field_in_a_virtual_service_is_rejected(
    write: Callable[[str, str], Path], base: Path
) -> None:
    vs = REVIEWS_TEST_V2.replace("  - route:\n", "  - rout:\n", 1)
    report = check(write, base, vs, REVIEWS_SUBSETS)
    finding = only(report, "IST0106")
    assert finding.message == 'Schema validation error: unknown field "spec.http[1].rout"'
    assert finding.line == 17
    assert 'Did you mean "route"?' in finding.fix


def test_wrong_type(write: Callable[[str, str], Path], base: Path) -> None:
    vs = REVIEWS_50_V3.replace("weight: 50", 'weight: "50"', 1)
    finding = only(check(write, base, vs, REVIEWS_SUBSETS), "IST0106")
    assert finding.message == (
        'Schema validation error: spec.http[0].route[0].weight: Invalid value: "50": '
        "must be of type integer"
    )
    assert "without quotes" in finding.fix


def test_invalid_enum_value(write: Callable[[str, str], Path], base: Path) -> None:
    dr = REVIEWS_SUBSETS.replace(
        "  subsets:", "  trafficPolicy:\n    loadBalancer:\n      simple: FASTEST\n  subsets:"
    )
    finding = only(check(write, base, dr), "IST0106")
    assert finding.path == "spec.trafficPolicy.loadBalancer.simple"
    assert 'Unsupported value: "FASTEST"' in finding.message
    assert '"ROUND_ROBIN"' in finding.message


def test_only_one_of_exact_prefix_regex(write: Callable[[str, str], Path], base: Path) -> None:
    vs = BOOKINFO_GATEWAY.replace("exact: /login", "exact: /login\n        prefix: /log")
    finding = only(check(write, base, vs), "IST0106")
    assert finding.message == (
        "Schema validation error: spec.http[0].match[2].uri: only one of exact, prefix, regex "
        "may be set, found exact, prefix"
    )


def test_missing_required_field_and_duplicate_key(
    write: Callable[[str, str], Path], base: Path
) -> None:
    service = """
    apiVersion: v1
    kind: Service
    metadata:
      name: web
    spec:
      selector: {app: web}
      selector: {app: web2}
      ports:
        - name: http
    """
    report = check(write, base, service)
    messages = sorted(f.message for f in report.findings)
    assert messages == [
        'Schema validation error: duplicate field "spec.selector"',
        "Schema validation error: spec.ports[0].port: Required value",
    ]


def test_missing_kind_and_name(write: Callable[[str, str], Path], base: Path) -> None:
    report = check(
        write,
        base,
        "apiVersion: v1\nmetadata:\n  name: x\n---\n"
        + REVIEWS_SUBSETS.replace("  name: reviews\n", "  labels: {a: b}\n", 1),
    )
    messages = sorted(f.message for f in report.findings)
    assert messages == [
        "Schema validation error: kind not set",
        "Schema validation error: metadata.name: Required value: name or generateName is required",
    ]


def test_istio_v1_kinds_all_have_strict_schemas(
    write: Callable[[str, str], Path], base: Path
) -> None:
    resources = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default, namespace: istio-system}
    spec:
      mtls: {mode: STRICT}
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: ratings-viewer}
    spec:
      selector:
        matchLabels: {app: ratings}
      action: ALLOW
      rules:
        - from:
            - source:
                principals: [cluster.local/ns/default/sa/bookinfo-reviews]
          to:
            - operation:
                methods: [GET]
    ---
    apiVersion: security.istio.io/v1
    kind: RequestAuthentication
    metadata: {name: jwt}
    spec:
      jwtRules:
        - issuer: testing@secure.istio.io
    ---
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata: {name: mesh-default, namespace: istio-system}
    spec:
      tracing:
        - providers: [{name: zipkin}]
          randomSamplingPercentage: 100.0
    ---
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default}
    spec:
      egress:
        - hosts: ["./*", "istio-system/*"]
    """
    assert check(write, base, resources).findings == []
    broken = resources.replace("mode: STRICT", "mode: STRICT, port: 1").replace(
        "action: ALLOW", "action: PERMIT"
    )
    report = check(write, base, broken)
    assert sorted(f.path for f in report.errors) == ["spec.action", "spec.mtls.port"]


def test_gateway_api_kinds_are_strict(write: Callable[[str, str], Path], base: Path) -> None:
    resources = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: bookinfo-gateway}
    spec:
      gatewayClassName: istio
      listeners:
        - name: http
          port: 80
          protocol: HTTP
          allowedRoutes:
            namespaces: {from: Same}
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: reviews}
    spec:
      parentRefs:
        - group: ""
          kind: Service
          name: reviews
          port: 9080
      rules:
        - matches:
            - headers:
                - name: end-user
                  value: jason
          backendRefs:
            - name: reviews-v2
              port: 9080
        - backendRefs:
            - {name: reviews-v1, port: 9080, weight: 90}
            - {name: reviews-v2, port: 9080, weight: 10}
    ---
    apiVersion: gateway.networking.k8s.io/v1beta1
    kind: ReferenceGrant
    metadata: {name: allow}
    spec:
      from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
      to: [{group: "", kind: Service}]
    """
    assert check(write, base, resources).findings == []
    report = check(write, base, resources.replace("- matches:", "- matchs:"))
    assert [f.message for f in report.errors] == [
        'Schema validation error: unknown field "spec.rules[0].matchs"'
    ]


# --- IST0118, IST0173, IST0174: warnings and infos do not fail validation --------------------


def test_port_name_not_under_naming_convention(
    write: Callable[[str, str], Path], base: Path
) -> None:
    service = """
    apiVersion: v1
    kind: Service
    metadata:
      name: web
    spec:
      selector: {app: web}
      ports:
        - {name: metrics, port: 9090}
        - {name: http-web, port: 80}
        - {name: web, port: 8080, appProtocol: http}
        - {name: db, port: 3306}
    """
    report = check(write, base, service)
    finding = only(report, "IST0118")
    assert finding.severity is Severity.INFO
    assert finding.message == (
        "Port name metrics (port: 9090, targetPort: 9090) doesn't follow the naming convention "
        "of Istio port."
    )
    assert report.ok


def test_subset_that_selects_no_pods(write: Callable[[str, str], Path], base: Path) -> None:
    dr = REVIEWS_SUBSETS + "  - name: v4\n    labels:\n      version: v4\n"
    report = check(write, base, dr)
    finding = only(report, "IST0173")
    assert finding.severity is Severity.WARNING
    assert finding.message == (
        "The Subset v4 defined in the DestinationRule does not select any pods. Which may lead "
        "to 503 UH (NoHealthyUpstream)."
    )
    assert "app=reviews,version=v4" in finding.fix
    assert report.ok


def test_destination_rule_host_not_found(write: Callable[[str, str], Path], base: Path) -> None:
    report = check(write, base, REVIEWS_SUBSETS.replace("host: reviews", "host: reveiws"))
    finding = only(report, "IST0174")
    assert finding.message == (
        "The host reveiws defined in the DestinationRule does not match any services in the mesh."
    )
    assert report.ok


# --- ISTL0002 YAML syntax, ISTL0003 unknown kinds, ISTL0004 kustomize ------------------------


def test_yaml_syntax_error_has_line_and_column(
    write: Callable[[str, str], Path], base: Path
) -> None:
    broken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n spec: {}\n"
    report = check(write, base, broken)
    finding = only(report, "ISTL0002")
    assert (finding.line, finding.column) == (5, 2)
    assert finding.heading().startswith(f"Error [ISTL0002] (document 1 of {finding.file}:5:2)")
    assert "indentation" in finding.fix


def test_unknown_kind(write: Callable[[str, str], Path], base: Path) -> None:
    report = check(
        write,
        base,
        "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: x}\n---\n"
        "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: y}\n",
    )
    first, second = (f for f in report.findings if f.code == "ISTL0003")
    assert first.message.startswith(
        'No schema for apiVersion "networking.istio.io/v1" kind "VirtualServce"'
    )
    assert 'Did you mean "VirtualService"?' in first.fix
    assert second.fix == "Deployment is served as `apiVersion: apps/v1`."


@needs_kubectl
def test_kustomization_directory_is_built(write: Callable[[str, str], Path], base: Path) -> None:
    write("app/kustomization.yaml", "resources:\n  - bookinfo.yaml\n  - dr.yaml\n")
    write("app/bookinfo.yaml", base.read_text())
    write("app/dr.yaml", REVIEWS_SUBSETS)
    directory = base.parent.parent / "app"
    report = validate_paths([directory])
    assert report.findings == [], format_report(report)
    assert len(report.resources) == 11
    write("app/kustomization.yaml", "resources:\n  - missing.yaml\n")
    finding = only(validate_paths([directory]), "ISTL0004")
    assert "missing.yaml" in finding.message


def test_kustomization_without_kubectl(
    write: Callable[[str, str], Path], base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("app/kustomization.yaml", "resources:\n  - dr.yaml\n")
    write("app/dr.yaml", REVIEWS_SUBSETS)
    directory = base.parent.parent / "app"
    monkeypatch.setenv("PATH", "")
    with pytest.raises(IstiolabError, match="needs `kubectl kustomize`") as raised:
        validate_paths([directory])
    assert "give the YAML files" in raised.value.fix
    # As context, a kustomization is read as plain files when there is no kubectl.
    vs = write("vs.yaml", REVIEWS_50_V3)
    assert validate_paths([vs], known=[base, directory]).findings == []


def test_not_api_resources_and_patches_are_skipped(
    write: Callable[[str, str], Path], base: Path
) -> None:
    write("kind.yaml", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: []\n")
    write(
        "stage/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../base/bookinfo.yaml]\npatches:\n  - path: replicas.yaml\n",
    )
    write(
        "stage/replicas.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replicas: 2\n",
    )
    report = validate_paths([base.parent.parent])
    assert report.findings == [], format_report(report)
    reasons = "\n".join(f"{s.where}: {s.reason}" for s in report.skipped)
    assert "kind.x-k8s.io/v1alpha4 Cluster" in reasons
    assert "kustomization.yaml (kustomize.config.k8s.io/v1beta1 Kustomization)" in reasons
    assert "replicas.yaml: a kustomize patch" in reasons
    assert format_report(report).startswith("Skipped ")


def test_documents_from_text_and_known_resources() -> None:
    vs = load_text(REVIEWS_50_V3, "<stdin>").documents
    known = load_text(BOOKINFO + "---" + DESTINATION_RULE_ALL, "base").documents
    assert validate_documents(vs, known).findings == []
    report = validate_documents(vs)
    assert [f.message for f in report.errors] == ['Referenced host not found: "reviews"'] * 2
    report = validate_text("kind: [", "<stdin>", known)
    assert [f.heading() for f in report.findings] == [
        "Error [ISTL0002] (document 1 of <stdin>:1:8) YAML syntax error: while parsing a flow "
        "node expected the node content, but found '<stream end>'"
    ]


def test_built_istio_schemas_are_cached(
    write: Callable[[str, str], Path], base: Path, schema_cache: Path
) -> None:
    """A second process reads the cached schemas and never imports the pydantic models."""
    vs = write("vs.yaml", REVIEWS_50_V3.replace("weight: 50", "weight: fifty", 1))
    write("base/dr.yaml", REVIEWS_SUBSETS)
    assert not validate_paths([vs], known=[base.parent]).ok  # builds or reads the cached schema
    assert list(schema_cache.glob("istio-schemas-*/networking.istio.io_v1.VirtualService.json"))
    script = (
        "import sys\n"
        "from istiolab.validation import validate_paths\n"
        f"report = validate_paths([{str(vs)!r}], known=[{str(base.parent)!r}])\n"
        "print(sorted(f.path for f in report.errors))\n"
        "print(any(m.startswith('cloudcoil') for m in sys.modules))\n"
    )
    env = {**os.environ, "ISTIOLAB_CACHE_DIR": str(schema_cache)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.splitlines() == ["['spec.http[0].route[0].weight']", "False"]


# --- the command -----------------------------------------------------------------------------


def run_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`istiolab validate ...` in-process: through cli.main once it registers the command."""
    if "validate" in cli.COMMAND_MODULES:
        code = cli.main(["validate", *argv])
    else:
        parser = argparse.ArgumentParser(prog="istiolab")
        validate_command.register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["validate", *argv])
        try:
            code = args.handler(args)
        except IstiolabError as exc:
            print(f"istiolab: error: {exc}", file=sys.stderr)
            code = exc.exit_code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_command_clean_and_failing(
    write: Callable[[str, str], Path], base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write("good.yaml", REVIEWS_50_V3)
    dr = write("dr.yaml", REVIEWS_SUBSETS)
    code, out, _ = run_command([str(good), str(dr), "--known", str(base)], capsys)
    assert (code, out) == (0, NO_ISSUES + "\n")
    bad = write("bad.yaml", REVIEWS_50_V3.replace("subset: v3", "subset: v4"))
    code, out, _ = run_command([str(bad), str(dr), "--known", str(base)], capsys)
    assert code == 1
    assert 'Referenced host+subset in destinationrule not found: "reviews+v4"' in out
    assert out.rstrip().endswith("1 error(s), 0 warning(s), 0 info in 2 resource(s).")


def test_command_warnings_do_not_fail(
    write: Callable[[str, str], Path], base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dr = write("dr.yaml", REVIEWS_SUBSETS.replace("version: v3", "version: v9"))
    code, out, _ = run_command([str(dr), "--known", str(base)], capsys)
    assert code == 0
    assert out.startswith("Warning [IST0173] (DestinationRule default/reviews ")


def test_command_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_command([str(tmp_path / "nope.yaml")], capsys)
    assert code == 1
    assert "nope.yaml: no such file or directory\n  fix: check the path" in err
    assert "Traceback" not in out + err


# --- everything the repository ships ---------------------------------------------------------


def shipped_yaml(*roots: str) -> list[Path]:
    return sorted(
        p
        for root in roots
        if (REPO / root).is_dir()
        for p in (REPO / root).rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file()
    )


def test_every_shipped_manifest_validates(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = shipped_yaml("manifests")
    assert files, "no YAML under manifests/"
    monkeypatch.chdir(REPO)
    code, out, err = run_command([str(p.relative_to(REPO)) for p in files], capsys)
    assert code == 0, out + err
    # Tool configs (kind, istioctl, kustomize) are set aside by name, with the reason printed.
    for path in files:
        text = path.read_text()
        if (
            "kind.x-k8s.io" in text
            or "install.istio.io" in text
            or path.name.startswith("kustomization")
        ):
            assert f"Skipped {path.relative_to(REPO)}" in out


@needs_kubectl
def test_every_shipped_kustomization_builds_and_validates(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directories = sorted(
        {p.parent for p in shipped_yaml("manifests") if p.name.startswith("kustomization")}
    )
    assert directories, "no kustomization under manifests/"
    monkeypatch.chdir(REPO)
    for directory in directories:
        code, out, err = run_command([str(directory.relative_to(REPO))], capsys)
        assert code == 0, f"{directory}:\n{out}{err}"


def test_lab_files_validate() -> None:
    files = shipped_yaml("labs")
    if not files:
        pytest.skip("no labs/ yet")
    known = [REPO / "manifests" / "bookinfo"] if (REPO / "manifests" / "bookinfo").is_dir() else []
    # Starter files may be incomplete on purpose, but must never break the validator; the
    # solutions must be valid.
    report = validate_paths(files, known=known)
    assert not [f for f in report.findings if f.code == "ISTL0002"], format_report(report)
    solutions = [p for p in files if "solutions" in p.relative_to(REPO).parts]
    if solutions:
        solved = validate_paths(solutions, known=known)
        assert solved.ok, format_report(solved)
