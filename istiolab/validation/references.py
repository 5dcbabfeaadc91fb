"""Cross-reference analysis over a set of resources, like `istioctl analyze` on files.

What is checked, for the resources being validated (the `known` ones are context only: they can
be referenced, nothing is reported about them):

- VirtualService destinations (routes and mirrors): the host is a Service or a ServiceEntry host
  (IST0101 "host"), the subset is defined for that host by a DestinationRule (IST0101
  "host+subset in destinationrule"), the gateways exist (IST0101 "gateway");
- the weights of a route with several destinations add up to 100 (ISTL0001, this course's rule);
- a Gateway's selector matches the ingress gateway or a workload in the set (IST0101 "selector");
- Service ports follow Istio's protocol naming (IST0118);
- a DestinationRule's host is a service (IST0174) and each subset selects the pods of at least
  one workload in the set (IST0173).

Host names resolve the way Istio resolves them: a short name (no dot) is a Service in the
namespace of the resource that names it, anything with a dot is taken as written (so `reviews`
in namespace default is reviews.default.svc.cluster.local, and `reviews.default` is not).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .findings import (
    DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
    PORT_NAME_NOT_UNDER_NAMING_CONVENTION,
    REFERENCED_RESOURCE_NOT_FOUND,
    ROUTE_WEIGHTS_NOT_100,
    UNKNOWN_DESTINATION_RULE_HOST,
    Finding,
)
from .loading import Document, FieldPath, format_path

CLUSTER_DOMAIN = "svc.cluster.local"
MESH_GATEWAY = "mesh"

# The labels of the ingress gateway pods Istio's default profile installs
# (istio-ingressgateway); Istio's bookinfo-gateway.yaml selects istio: ingressgateway.
INGRESS_GATEWAY_LABELS: Mapping[str, str] = {
    "app": "istio-ingressgateway",
    "istio": "ingressgateway",
}

# Istio's port-name protocols (pkg/config/protocol), matched case-insensitively on the part of
# the name before the first "-"; grpc-web is matched as a prefix of its own.
PROTOCOL_PREFIXES = frozenset(
    {"grpc", "http", "http2", "https", "http_proxy", "mongo", "mysql", "redis", "tcp", "tls", "udp"}
)
# Ports Istio treats as TCP whatever their name (pkg/config/kube/conversion.go: SMTP, DNS,
# MySQL, MongoDB), and appProtocol values Kubernetes itself defines.
WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})
KUBERNETES_APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"})
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

_POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _selector_string(labels: Mapping[str, str]) -> str:
    """k=v pairs sorted and joined by commas, as Kubernetes prints a label selector."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name rule: a name without a dot is a Service in `namespace`."""
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _is_istio(document: Document, kind: str) -> bool:
    return document.kind == kind and document.group == "networking.istio.io"


@dataclass(frozen=True)
class _Workload:
    namespace: str
    labels: Mapping[str, str]
    where: str


@dataclass(frozen=True)
class _Destination:
    path: FieldPath  # to the destination object
    destination: dict[str, Any]
    mirror: bool


class _Index:
    """What the resource set holds, by the names references use."""

    def __init__(self, documents: Sequence[Document], others: Sequence[Document]) -> None:
        # Later documents replace earlier ones of the same kind, namespace and name, so the
        # resources being validated win over the known ones they edit.
        unique: dict[tuple[str, str, str, str], Document] = {}
        for document in documents:
            unique[(document.group, document.kind, document.namespace, document.name)] = document
        self.documents = list(unique.values())
        self.services: dict[str, Document] = {}
        self.service_entries: list[tuple[Document, list[str]]] = []
        self.subsets: dict[str, dict[str, Document]] = {}  # DR host (FQDN or pattern) -> subsets
        self.gateways: set[tuple[str, str]] = set()
        self.workloads: list[_Workload] = []
        self.ingress_labels: list[Mapping[str, str]] = [INGRESS_GATEWAY_LABELS]
        for document in self.documents:
            self._add(document)
        for document in others:
            self._add_install(document)

    def _add(self, document: Document) -> None:
        kind, ns, spec = document.kind, document.namespace, document.spec
        if kind == "Service" and document.api_version == "v1":
            self.services[f"{document.name}.{ns}.{CLUSTER_DOMAIN}"] = document
        elif _is_istio(document, "ServiceEntry"):
            hosts = [h for h in spec.get("hosts") or [] if isinstance(h, str)]
            self.service_entries.append((document, hosts))
        elif _is_istio(document, "DestinationRule"):
            host = fqdn(_str(spec.get("host")), ns)
            for subset in _dicts(spec.get("subsets")):
                name = _str(subset.get("name"))
                self.subsets.setdefault(host, {}).setdefault(name, document)
        elif _is_istio(document, "Gateway") or (
            kind == "Gateway" and document.group == "gateway.networking.k8s.io"
        ):
            self.gateways.add((ns, document.name))
        elif kind == "Pod" and document.api_version == "v1":
            self.workloads.append(_Workload(ns, _labels(document.metadata.get("labels")), kind))
        elif kind in _POD_TEMPLATE_KINDS or kind == "CronJob":
            template_holder = spec
            if kind == "CronJob":
                job = spec.get("jobTemplate")
                template_holder = job.get("spec") if isinstance(job, dict) else None
            template = template_holder.get("template") if isinstance(template_holder, dict) else {}
            metadata = template.get("metadata") if isinstance(template, dict) else {}
            labels = _labels(metadata.get("labels") if isinstance(metadata, dict) else None)
            self.workloads.append(_Workload(ns, labels, f"{kind} {ns}/{document.name}"))

    def _add_install(self, document: Document) -> None:
        """An IstioOperator may label its ingress gateways (components.ingressGateways[].label)."""
        if document.kind != "IstioOperator":
            return
        components = document.spec.get("components")
        if not isinstance(components, dict):
            return
        for gateway in _dicts(components.get("ingressGateways")):
            labels = _labels(gateway.get("label"))
            if labels:
                self.ingress_labels.append(labels)

    def service_exists(self, host: str, namespace: str) -> bool:
        name = fqdn(host, namespace)
        if name in self.services:
            return True
        for entry, hosts in self.service_entries:
            export_to = entry.spec.get("exportTo")
            if isinstance(export_to, list) and export_to and "*" not in export_to:
                visible = {
                    entry.namespace if e == "." else e for e in export_to if isinstance(e, str)
                }
                if namespace not in visible:
                    continue
            if any(_host_matches(pattern, name) for pattern in hosts):
                return True
        return False

    def subsets_for(self, host: str) -> dict[str, Document]:
        found: dict[str, Document] = {}
        for pattern, subsets in self.subsets.items():
            if _host_matches(pattern, host):
                for name, document in subsets.items():
                    found.setdefault(name, document)
        return found

    def close_services(self, host: str, namespace: str) -> list[str]:
        names = [s.name for s in self.services.values() if s.namespace == namespace]
        return difflib.get_close_matches(host.split(".")[0], names, n=1, cutoff=0.6)


def _virtual_service_destinations(spec: dict[str, Any]) -> Iterator[_Destination]:
    for section in ("http", "tcp", "tls"):
        for i, rule in enumerate(_dicts(spec.get(section))):
            for j, route in enumerate(_dicts(rule.get("route"))):
                destination = route.get("destination")
                if isinstance(destination, dict):
                    yield _Destination((section, i, "route", j, "destination"), destination, False)
            if section != "http":
                continue
            mirror = rule.get("mirror")
            if isinstance(mirror, dict):
                yield _Destination(("http", i, "mirror"), mirror, True)
            for j, entry in enumerate(_dicts(rule.get("mirrors"))):
                destination = entry.get("destination")
                if isinstance(destination, dict):
                    yield _Destination(("http", i, "mirrors", j, "destination"), destination, True)


def _virtual_service_gateways(spec: dict[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    for i, name in enumerate(spec.get("gateways") or []):
        if isinstance(name, str):
            yield ("gateways", i), name
    for section in ("http", "tcp", "tls"):
        for i, rule in enumerate(_dicts(spec.get(section))):
            for j, match in enumerate(_dicts(rule.get("match"))):
                for k, name in enumerate(match.get("gateways") or []):
                    if isinstance(name, str):
                        yield (section, i, "match", j, "gateways", k), name


def _check_virtual_service(document: Document, index: _Index) -> Iterator[Finding]:
    ns, spec = document.namespace, document.spec
    for ref in _virtual_service_destinations(spec):
        host = _str(ref.destination.get("host"))
        if not host:
            continue
        path = ("spec", *ref.path)
        if not index.service_exists(host, ns):
            close = index.close_services(host, ns)
            hint = f'Did you mean "{close[0]}"? ' if close else ""
            yield document.finding(
                REFERENCED_RESOURCE_NOT_FOUND,
                f'Referenced {"mirror host" if ref.mirror else "host"} not found: "{host}"',
                path=(*path, "host"),
                fix=f"{hint}No Service {fqdn(host, ns)} is among the resources given. A short "
                f"name is a Service in the VirtualService's namespace ({ns}); for another "
                "namespace write name.namespace.svc.cluster.local, and for a host outside the "
                "mesh add a ServiceEntry.",
            )
            continue
        subset = _str(ref.destination.get("subset"))
        if not subset:
            continue
        defined = index.subsets_for(fqdn(host, ns))
        if subset in defined:
            continue
        reftype = "mirror+subset" if ref.mirror else "host+subset"
        if defined:
            owners = sorted({d.ref for d in defined.values()})
            fix = (
                f"{', '.join(owners)} defines subsets {', '.join(sorted(defined))} for {host}: "
                f"route to one of them, or add a subset named {subset} (with the labels of "
                "the pods it stands for, e.g. version: " + subset + ")."
            )
        else:
            fix = (
                f"No DestinationRule defines subsets for {fqdn(host, ns)}: add one with a subset "
                f"named {subset} (for Bookinfo, the subsets of destination-rule-all.yaml), or "
                "apply it before this VirtualService."
            )
        yield document.finding(
            REFERENCED_RESOURCE_NOT_FOUND,
            f'Referenced {reftype} in destinationrule not found: "{host}+{subset}"',
            path=(*path, "subset"),
            fix=fix,
        )
    for path, name in _virtual_service_gateways(spec):
        if name == MESH_GATEWAY:
            continue
        gateway_ns, _, gateway_name = name.rpartition("/")
        if (gateway_ns or ns, gateway_name) in index.gateways:
            continue
        in_ns = sorted(n for g_ns, n in index.gateways if g_ns == (gateway_ns or ns))
        found = f" (Gateways there: {', '.join(in_ns)})" if in_ns else ""
        yield document.finding(
            REFERENCED_RESOURCE_NOT_FOUND,
            f'Referenced gateway not found: "{name}"',
            path=("spec", *path),
            fix=f"No Gateway {gateway_name} in namespace {gateway_ns or ns} is among the "
            f"resources given{found}. Use the Gateway's metadata.name (namespace/name for a "
            "Gateway in another namespace), or `mesh` for traffic inside the mesh.",
        )
    yield from _check_weights(document)


def _check_weights(document: Document) -> Iterator[Finding]:
    for section in ("http", "tcp", "tls"):
        for i, rule in enumerate(_dicts(document.spec.get(section))):
            routes = _dicts(rule.get("route"))
            if len(routes) < 2:
                continue
            weights = [r.get("weight", 0) for r in routes]
            if not all(isinstance(w, int) and not isinstance(w, bool) for w in weights):
                continue  # the schema reports the wrong type
            total = sum(weights)
            if total == 100:
                continue
            parts = []
            for route, weight in zip(routes, weights, strict=True):
                destination = route.get("destination")
                destination = destination if isinstance(destination, dict) else {}
                label = _str(destination.get("host")) or "?"
                if destination.get("subset"):
                    label += f" {destination['subset']}"
                parts.append(f"{label} {weight}")
            yield document.finding(
                ROUTE_WEIGHTS_NOT_100,
                f"Route weights add up to {total}, not 100: {', '.join(parts)}",
                path=("spec", section, i, "route"),
                fix="Make the weights of this route add up to 100: each is the percentage of "
                "requests its destination gets (a destination without a weight has 0). Istio "
                "itself would divide traffic by weight/sum; this course asks for percentages.",
            )


def _check_gateway(document: Document, index: _Index) -> Iterator[Finding]:
    selector = _labels(document.spec.get("selector"))
    if not selector:
        return
    candidates = [*index.ingress_labels, *(w.labels for w in index.workloads)]
    if any(all(labels.get(k) == v for k, v in selector.items()) for labels in candidates):
        return
    yield document.finding(
        REFERENCED_RESOURCE_NOT_FOUND,
        f'Referenced selector not found: "{_selector_string(selector)}"',
        path=("spec", "selector"),
        fix="No gateway pods carry these labels. The course's ingress gateway "
        "(istio-ingressgateway, in istio-system) has the labels istio: ingressgateway and "
        "app: istio-ingressgateway; select it with `selector: {istio: ingressgateway}`.",
    )


def _port_protocol_ok(port: dict[str, Any]) -> bool:
    if _str(port.get("protocol")).upper() == "UDP":
        return True
    name = _str(port.get("name"))
    app_protocol = port.get("appProtocol")
    if isinstance(app_protocol, str):
        if app_protocol in KUBERNETES_APP_PROTOCOLS:
            return True
        name = app_protocol
    if name.lower().startswith("grpc-web"):
        return True
    if name.split("-", 1)[0].lower() in PROTOCOL_PREFIXES:
        return True
    return port.get("port") in WELL_KNOWN_TCP_PORTS


def _check_service(document: Document) -> Iterator[Finding]:
    if document.namespace in SYSTEM_NAMESPACES or document.spec.get("type") == "ExternalName":
        return
    for i, port in enumerate(_dicts(document.spec.get("ports"))):
        if _port_protocol_ok(port):
            continue
        name = _str(port.get("name"))
        number = port.get("port")
        target = port.get("targetPort", number)
        yield document.finding(
            PORT_NAME_NOT_UNDER_NAMING_CONVENTION,
            f"Port name {name} (port: {number}, targetPort: {target}) doesn't follow the naming "
            "convention of Istio port.",
            path=("spec", "ports", i, "name" if name else "port"),
            fix='Name the port after its protocol: "http" or "http-<suffix>" for HTTP (also '
            "http2, https, grpc, grpc-web, tcp, tls, mongo, mysql, redis), or set appProtocol. "
            "Otherwise Istio has to guess the protocol from the first bytes (protocol sniffing).",
        )


def _check_destination_rule(document: Document, index: _Index) -> Iterator[Finding]:
    host = _str(document.spec.get("host"))
    if not host or "*" in host:
        return
    ns = document.namespace
    if not index.service_exists(host, ns):
        yield document.finding(
            UNKNOWN_DESTINATION_RULE_HOST,
            f"The host {host} defined in the DestinationRule does not match any services in "
            "the mesh.",
            path=("spec", "host"),
            fix=f"Check the spelling of the host: a short name is a Service in namespace {ns}; "
            "for another namespace write name.namespace.svc.cluster.local; for a host outside "
            "the mesh add a ServiceEntry.",
        )
        return
    service = index.services.get(fqdn(host, ns))
    if service is None:
        return  # a ServiceEntry host: its endpoints are not pods in the set
    selector = _labels(service.spec.get("selector"))
    if not selector:
        return
    pods = [w for w in index.workloads if w.namespace == service.namespace]
    for i, subset in enumerate(_dicts(document.spec.get("subsets"))):
        wanted = {**selector, **_labels(subset.get("labels"))}
        if any(all(w.labels.get(k) == v for k, v in wanted.items()) for w in pods):
            continue
        name = _str(subset.get("name"))
        yield document.finding(
            DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
            f"The Subset {name} defined in the DestinationRule does not select any pods. Which "
            "may lead to 503 UH (NoHealthyUpstream).",
            path=("spec", "subsets", i, "labels"),
            fix=f"No workload among the resources given has the pod labels "
            f"{_selector_string(wanted)} (the Service's selector plus the subset's labels): "
            "correct the subset's labels, deploy that version, or remove the subset if nothing "
            "routes to it.",
        )


def analyze(
    resources: Sequence[Document],
    known: Iterable[Document] = (),
    others: Iterable[Document] = (),
) -> list[Finding]:
    """Reference findings for `resources`.

    `known` resources and `others` (documents that are not API resources, e.g. an IstioOperator)
    are context: they can be referenced, nothing is reported about them.
    """
    index = _Index([*known, *resources], list(others))
    findings: list[Finding] = []
    for document in resources:
        if _is_istio(document, "VirtualService"):
            findings.extend(_check_virtual_service(document, index))
        elif _is_istio(document, "Gateway"):
            findings.extend(_check_gateway(document, index))
        elif _is_istio(document, "DestinationRule"):
            findings.extend(_check_destination_rule(document, index))
        elif document.kind == "Service" and document.api_version == "v1":
            findings.extend(_check_service(document))
    return findings


__all__ = ["analyze", "format_path", "fqdn"]
