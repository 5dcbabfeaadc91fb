"""Kinds as kubectl names them: "VirtualService" -> "virtualservices.networking.istio.io"."""

from __future__ import annotations

from collections.abc import Mapping

# Every kind a check may ask about, as the fully qualified resource name kubectl takes. Qualified
# names keep `kubectl get` from guessing: "gateways" alone could be Istio's or the Gateway API's.
KIND_RESOURCES: Mapping[str, str] = {
    # Kubernetes
    "Namespace": "namespaces",
    "Pod": "pods",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Endpoints": "endpoints",
    "EndpointSlice": "endpointslices.discovery.k8s.io",
    "Deployment": "deployments.apps",
    "ReplicaSet": "replicasets.apps",
    "StatefulSet": "statefulsets.apps",
    "DaemonSet": "daemonsets.apps",
    "Job": "jobs.batch",
    # Istio
    "VirtualService": "virtualservices.networking.istio.io",
    "DestinationRule": "destinationrules.networking.istio.io",
    "Gateway": "gateways.networking.istio.io",
    "ServiceEntry": "serviceentries.networking.istio.io",
    "Sidecar": "sidecars.networking.istio.io",
    "EnvoyFilter": "envoyfilters.networking.istio.io",
    "WorkloadEntry": "workloadentries.networking.istio.io",
    "WorkloadGroup": "workloadgroups.networking.istio.io",
    "ProxyConfig": "proxyconfigs.networking.istio.io",
    "PeerAuthentication": "peerauthentications.security.istio.io",
    "AuthorizationPolicy": "authorizationpolicies.security.istio.io",
    "RequestAuthentication": "requestauthentications.security.istio.io",
    "Telemetry": "telemetries.telemetry.istio.io",
    "WasmPlugin": "wasmplugins.extensions.istio.io",
    # Kubernetes Gateway API ("Gateway" alone means Istio's; ask for
    # "Gateway.gateway.networking.k8s.io" for the Gateway API's)
    "GatewayClass": "gatewayclasses.gateway.networking.k8s.io",
    "HTTPRoute": "httproutes.gateway.networking.k8s.io",
    "GRPCRoute": "grpcroutes.gateway.networking.k8s.io",
    "ReferenceGrant": "referencegrants.gateway.networking.k8s.io",
    "TLSRoute": "tlsroutes.gateway.networking.k8s.io",
    "TCPRoute": "tcproutes.gateway.networking.k8s.io",
    "UDPRoute": "udproutes.gateway.networking.k8s.io",
    "BackendTLSPolicy": "backendtlspolicies.gateway.networking.k8s.io",
}
_PLURALS = {kind: resource.split(".", 1)[0] for kind, resource in KIND_RESOURCES.items()}


def resource_name(kind: str) -> str:
    """The kubectl name of a kind's resource, e.g. "virtualservices.networking.istio.io".

    "Kind.group" picks the group ("Gateway.gateway.networking.k8s.io"), and a resource name that
    is already qualified ("virtualservices.networking.istio.io") is taken as it is.
    """
    if kind in KIND_RESOURCES:
        return KIND_RESOURCES[kind]
    name, dot, group = kind.partition(".")
    if dot and group:
        plural = _PLURALS.get(name)
        return f"{plural}.{group}" if plural else kind
    raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(sorted(KIND_RESOURCES))}")


def resource_group(resource: str) -> str:
    """The API group of a resource name ("networking.istio.io"); "" for the core group."""
    return resource.partition(".")[2]
