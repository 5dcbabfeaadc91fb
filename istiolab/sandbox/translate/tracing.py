"""Tracing: the Telemetry API's `tracing` settings to each HTTP connection manager's `tracing`.

Every proxy reports the spans it sees to the mesh's Zipkin collector (the sandbox's, on
127.0.0.1:9411), through the cluster `outbound|9411||zipkin.istio-system.svc.cluster.local`, as
istiod configures an `extensionProviders` entry of type zipkin (reference section 6.1).

Which requests are traced is decided once, by the first proxy a request meets (the ingress
gateway, or the sidecar of the app that sends it): it samples `randomSamplingPercentage` of
them and writes the decision into `x-b3-sampled`, which every later proxy follows, as long as
the apps copy the trace headers onto the requests they make (bookinfo/propagation.py).

The Telemetry resources that apply to a proxy, narrowest last: one in the root namespace
(istio-system) without a selector, one in the proxy's namespace without a selector, one whose
selector matches the proxy's labels (a selector in the root namespace is ignored, as istiod does).
A narrower one overrides only the fields it sets, each field whole. With no Telemetry at all, the
sandbox behaves like the course's Istio install: the `zipkin` provider at Istio's default
sampling of 1% (PILOT_TRACE_SAMPLING).

`customTags` add tags to every span the proxy reports: a literal value, a request header, or an
environment variable of the proxy's container (the sandbox gives each sidecar's Envoy the
variables Istio's istio-proxy container has: POD_NAME, POD_NAMESPACE, INSTANCE_IP,
SERVICE_ACCOUNT).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model import CLUSTER_DOMAIN
from . import names

ROOT_NAMESPACE = "istio-system"
ZIPKIN_PROVIDER = "zipkin"  # the name the course's IstioOperator gives its extension provider
ZIPKIN_HOST = f"zipkin.istio-system.svc.{CLUSTER_DOMAIN}"
ZIPKIN_PORT = 9411
ZIPKIN_CLUSTER = names.outbound_cluster(ZIPKIN_PORT, ZIPKIN_HOST)
DEFAULT_SAMPLING = 1.0  # percent: PILOT_TRACE_SAMPLING's default
KNOWN_PROVIDERS = frozenset({ZIPKIN_PROVIDER})
_ZIPKIN_CONFIG = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig"


@dataclass(frozen=True)
class TracingSettings:
    """What the Telemetry resources decide for one proxy."""

    sampling: float = DEFAULT_SAMPLING  # percent of the requests this proxy starts a trace for
    reporting: bool = True  # False: disableSpanReporting, or a provider list without zipkin
    custom_tags: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # as in customTags


def settings_for(
    telemetries: Iterable[Mapping[str, Any]], namespace: str, labels: Mapping[str, str]
) -> TracingSettings:
    """The tracing settings of a proxy in `namespace` with `labels`."""
    mesh_wide, namespace_wide, workload = [], [], []
    for telemetry in _oldest_first(telemetries):
        metadata = telemetry.get("metadata") or {}
        spec = telemetry.get("spec") or {}
        where = metadata.get("namespace", "default")
        selector = (spec.get("selector") or {}).get("matchLabels")
        if selector is None and where == ROOT_NAMESPACE:
            mesh_wide.append(spec)
        elif selector is None and where == namespace:
            namespace_wide.append(spec)
        elif where == namespace != ROOT_NAMESPACE and _selects(selector or {}, labels):
            workload.append(spec)
    sampling, reporting, custom_tags = DEFAULT_SAMPLING, True, {}
    # istiod uses the first (oldest) Telemetry of each scope and lets the narrower scope win.
    for scope in (mesh_wide, namespace_wide, workload):
        if not scope:
            continue
        for tracing in scope[0].get("tracing") or ():
            if tracing.get("randomSamplingPercentage") is not None:
                sampling = float(tracing["randomSamplingPercentage"])
            providers = [p.get("name") for p in tracing.get("providers") or ()]
            if providers:
                reporting = ZIPKIN_PROVIDER in providers
            if tracing.get("disableSpanReporting") is not None:
                reporting = not tracing["disableSpanReporting"]
            if tracing.get("customTags") is not None:
                custom_tags = dict(tracing["customTags"])
    return TracingSettings(sampling=sampling, reporting=reporting, custom_tags=custom_tags)


def connection_manager_tracing(
    settings: TracingSettings,
    *,
    canonical_service: str,
    namespace: str,
    spawn_upstream_span: bool = False,
) -> dict[str, Any] | None:
    """The `tracing` block of an HTTP connection manager, or None when it reports no spans.

    `spawn_upstream_span` is for the ingress gateway: it reports a span for the request it
    received and one for the request it sends on, as a full hop (istiod sets it for routers).
    """
    if not settings.reporting:
        return None
    tracing: dict[str, Any] = {
        "client_sampling": {"value": 100},
        "random_sampling": {"value": settings.sampling},
        "overall_sampling": {"value": 100},
        "custom_tags": [
            {"tag": "istio.canonical_service", "literal": {"value": canonical_service}},
            {"tag": "istio.mesh_id", "literal": {"value": CLUSTER_DOMAIN}},
            {"tag": "istio.namespace", "literal": {"value": namespace}},
            *(_custom_tag(name, tag) for name, tag in sorted(settings.custom_tags.items())),
        ],
        "provider": {
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": _ZIPKIN_CONFIG,
                # collector_service, not collector_cluster/collector_endpoint: istiod's form
                # for proxies from 1.29 on, and the one Envoy 1.40 does not call deprecated.
                "collector_service": {
                    "http_uri": {
                        "uri": f"http://{ZIPKIN_HOST}:{ZIPKIN_PORT}/api/v2/spans",
                        "cluster": ZIPKIN_CLUSTER,
                        "timeout": "5s",
                    }
                },
                "collector_endpoint_version": "HTTP_JSON",
                "trace_id_128bit": True,
                "shared_span_context": False,
            },
        },
    }
    if spawn_upstream_span:
        tracing["spawn_upstream_span"] = True
    return tracing


def _custom_tag(name: str, tag: Mapping[str, Any]) -> dict[str, Any]:
    """One customTags entry as Envoy's CustomTag (istiod's buildCustomTags)."""
    if tag.get("header") is not None:
        header = tag["header"]
        found: dict[str, Any] = {"name": str(header.get("name", ""))}
        if header.get("defaultValue"):
            found["default_value"] = str(header["defaultValue"])
        return {"tag": name, "request_header": found}
    if tag.get("environment") is not None:
        variable = tag["environment"]
        found = {"name": str(variable.get("name", ""))}
        if variable.get("defaultValue"):
            found["default_value"] = str(variable["defaultValue"])
        return {"tag": name, "environment": found}
    literal = tag.get("literal") or {}
    return {"tag": name, "literal": {"value": str(literal.get("value", ""))}}


def proxy_environment(pod_name: str, namespace: str, service_account: str) -> dict[str, str]:
    """The environment Istio's istio-proxy container has (from the downward API), which
    `environment` custom tags read."""
    return {
        "POD_NAME": pod_name,
        "POD_NAMESPACE": namespace,
        "INSTANCE_IP": "127.0.0.1",
        "SERVICE_ACCOUNT": service_account,
    }


def zipkin_cluster(collector_port: int) -> dict[str, Any]:
    """Where every proxy sends its spans: the sandbox's collector on 127.0.0.1."""
    return {
        "name": ZIPKIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": ZIPKIN_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": collector_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def unknown_providers(telemetry: Mapping[str, Any]) -> list[str]:
    """Tracing providers a Telemetry names that the sandbox's mesh does not define."""
    spec = telemetry.get("spec") or {}
    return [
        str(provider.get("name"))
        for tracing in spec.get("tracing") or ()
        for provider in tracing.get("providers") or ()
        if provider.get("name") not in KNOWN_PROVIDERS
    ]


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _oldest_first(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(
        resources,
        key=lambda r: (
            str((r.get("metadata") or {}).get("creationTimestamp", "")),
            str((r.get("metadata") or {}).get("name", "")),
        ),
    )
