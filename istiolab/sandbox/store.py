"""The sandbox's API server: the resources a learner applied, kept the way Kubernetes keeps them.

`istiolab apply -f FILE` ends here, as `kubectl apply -f FILE` ends at the API server:

    store = Store.load(state_dir)
    result = store.apply(load_documents(["labs/03-request-routing/vs.yaml"]))
    print("\\n".join(result.lines()))   # virtualservice.networking.istio.io/reviews created

What it keeps, and how:
- Every object under (group, kind, namespace, name). Namespaced kinds without a namespace land in
  `default` (or in the namespace given, like `kubectl apply -n NS`); cluster-scoped kinds
  (Namespace, GatewayClass) have none. The group is part of the key because two kinds share a
  name: Istio's Gateway (networking.istio.io) and the Gateway API's (gateway.networking.k8s.io).
- An apply is all or nothing. The whole batch is validated first with istiolab.validation, with
  what the store already holds as known resources (so a VirtualService may name the subsets of a
  DestinationRule applied earlier), then with the checks the API server and the sandbox add:
  names and labels well-formed, the namespace exists, a Deployment's selector matches its pod
  template and never changes, only kinds the sandbox serves (and, in registry.admit, only
  Bookinfo's images). One error and nothing changes: the report says what and where.
- Each change is reported like kubectl reports it (`deployment.apps/reviews-v1 created`,
  `configured`, `unchanged`). An object's `generation` grows when anything outside its metadata
  changes, as in Kubernetes; the store's `revision` grows once per change of any kind (apply,
  delete, label, restart) and is what the control plane uses as the configuration version.
- Labels and annotations merge the way `kubectl apply` merges them (a three-way merge against the
  last applied file): a label set with `istiolab label` or the restart marker of `rollout restart`
  survives a later apply of a file that does not mention it; a key the file used to set and no
  longer does is removed.
- Everything lives in one JSON file in the state directory, replaced atomically on each change,
  so a control plane restarted with `Store.load(state_dir)` finds the same objects and revision.

The namespaces a cluster starts with exist from the start (default, kube-system, kube-public,
kube-node-lease, and istio-system where Istio is installed), each labelled
kubernetes.io/metadata.name like the API server labels every namespace. Pods are not kept here:
the registry (registry.py) runs the Deployments, as the controllers and kubelets would.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import IstiolabError
from ..validation import Report, validate_documents
from ..validation.findings import (
    KUSTOMIZE_BUILD_FAILED,
    REFERENCED_RESOURCE_NOT_FOUND,
    SCHEMA_VALIDATION_ERROR,
    UNKNOWN_KIND,
    YAML_SYNTAX_ERROR,
    Finding,
    Severity,
)
from ..validation.loading import (
    CLUSTER_SCOPED_KINDS,
    YAML_SUFFIXES,
    Document,
    Loaded,
    build_kustomization,
    format_path,
    is_kustomization_dir,
    load_paths,
    load_text,
)

STATE_FILE = "resources.json"
STATE_FORMAT = 1
DEFAULT_NAMESPACE = "default"
# The namespaces a kind cluster with Istio has before anything is applied.
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "istio-system")
# Kubernetes refuses to delete the first three; istio-system holds the sandbox's ingress gateway.
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "istio-system"})
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

# The course's code for what the sandbox cannot do that a cluster could (a foreign image, a
# StatefulSet): the file is valid Kubernetes, the sandbox just does not run it.
SANDBOX_UNSUPPORTED = "ISTL0010"

_SCHEMA_CODES = frozenset(
    {SCHEMA_VALIDATION_ERROR, UNKNOWN_KIND, YAML_SYNTAX_ERROR, KUSTOMIZE_BUILD_FAILED}
)


# --------------------------------------------------------------------------------------------
# Resource types: kinds, their groups, and the names kubectl accepts for them


@dataclass(frozen=True)
class ResourceType:
    """A kind as kubectl knows it: `kubectl get vs` and `virtualservice.networking.istio.io/x`."""

    kind: str
    group: str  # "" for the core group (v1)
    plural: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    stored: bool = True  # False: served by the registry (pods), not kept in the store

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def name(self) -> str:
        """How kubectl names the type in apply output: `deployment.apps`, `service`."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    @property
    def resource(self) -> str:
        """How the API server names it in errors: `deployments.apps`, `services`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def ref(self, name: str) -> str:
        """`deployment.apps/reviews-v1`: one object, as kubectl prints it."""
        return f"{self.name}/{name}"

    def not_found(self, name: str) -> str:
        return f'Error from server (NotFound): {self.resource} "{name}" not found'


_ISTIO_NETWORKING = "networking.istio.io"
_ISTIO_SECURITY = "security.istio.io"
_GATEWAY_API = "gateway.networking.k8s.io"

# In the order kubectl resolves an ambiguous name: `kubectl get gateway` lists the Gateway API's
# Gateways when both CRDs are installed (istio/istio#44354), `gw` is Istio's and `gtw` the
# Gateway API's short name.
RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("Namespace", "", "namespaces", ("ns",), namespaced=False),
    ResourceType("Service", "", "services", ("svc",)),
    ResourceType("ServiceAccount", "", "serviceaccounts", ("sa",)),
    ResourceType("ConfigMap", "", "configmaps", ("cm",)),
    ResourceType("Secret", "", "secrets"),
    ResourceType("Pod", "", "pods", ("po",), stored=False),
    ResourceType("Deployment", "apps", "deployments", ("deploy",)),
    ResourceType("Gateway", _GATEWAY_API, "gateways", ("gtw",)),
    ResourceType("GatewayClass", _GATEWAY_API, "gatewayclasses", ("gc",), namespaced=False),
    ResourceType("HTTPRoute", _GATEWAY_API, "httproutes"),
    ResourceType("GRPCRoute", _GATEWAY_API, "grpcroutes"),
    ResourceType("TCPRoute", _GATEWAY_API, "tcproutes"),
    ResourceType("TLSRoute", _GATEWAY_API, "tlsroutes"),
    ResourceType("UDPRoute", _GATEWAY_API, "udproutes"),
    ResourceType("ReferenceGrant", _GATEWAY_API, "referencegrants", ("refgrant",)),
    ResourceType("BackendTLSPolicy", _GATEWAY_API, "backendtlspolicies", ("btlspolicy",)),
    ResourceType("VirtualService", _ISTIO_NETWORKING, "virtualservices", ("vs",)),
    ResourceType("DestinationRule", _ISTIO_NETWORKING, "destinationrules", ("dr",)),
    ResourceType("Gateway", _ISTIO_NETWORKING, "gateways", ("gw",)),
    ResourceType("ServiceEntry", _ISTIO_NETWORKING, "serviceentries", ("se",)),
    ResourceType("Sidecar", _ISTIO_NETWORKING, "sidecars"),
    ResourceType("WorkloadEntry", _ISTIO_NETWORKING, "workloadentries", ("we",)),
    ResourceType("WorkloadGroup", _ISTIO_NETWORKING, "workloadgroups", ("wg",)),
    ResourceType("EnvoyFilter", _ISTIO_NETWORKING, "envoyfilters"),
    ResourceType("ProxyConfig", _ISTIO_NETWORKING, "proxyconfigs"),
    ResourceType("AuthorizationPolicy", _ISTIO_SECURITY, "authorizationpolicies", ("ap",)),
    ResourceType("PeerAuthentication", _ISTIO_SECURITY, "peerauthentications", ("pa",)),
    ResourceType("RequestAuthentication", _ISTIO_SECURITY, "requestauthentications", ("ra",)),
    ResourceType("Telemetry", "telemetry.istio.io", "telemetries", ("telemetry",)),
    ResourceType("WasmPlugin", "extensions.istio.io", "wasmplugins"),
)

# The Kubernetes kinds the sandbox keeps; Istio and Gateway API kinds are all kept.
SANDBOX_KUBERNETES_KINDS = frozenset(
    {"Namespace", "Service", "ServiceAccount", "ConfigMap", "Secret", "Deployment"}
)


def _is_config_group(group: str) -> bool:
    return group.endswith(".istio.io") or group == _GATEWAY_API


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    return lower + "s"


def type_of(group: str, kind: str) -> ResourceType:
    """The type of an object by its apiVersion group and kind (a kind not listed gets one)."""
    for resource_type in RESOURCE_TYPES:
        if resource_type.kind == kind and resource_type.group == group:
            return resource_type
    return ResourceType(kind, group, _plural(kind), namespaced=kind not in CLUSTER_SCOPED_KINDS)


def resolve(name: str) -> ResourceType:
    """The type a kubectl-style name means: `vs`, `virtualservices`, `VirtualService`,
    `virtualservices.networking.istio.io`, `deploy`, `po` (pods: the registry serves those)."""
    wanted = name.strip().lower()
    for resource_type in RESOURCE_TYPES:
        if wanted in (resource_type.singular, resource_type.plural, *resource_type.short_names):
            return resource_type
    resource, dot, group = wanted.partition(".")
    if dot:
        for resource_type in RESOURCE_TYPES:
            names = (resource_type.singular, resource_type.plural, *resource_type.short_names)
            # `deployments.apps`, and `deployments.v1.apps` with a version in front of the group
            version, _, rest = group.partition(".")
            groups = {group, rest} if re.fullmatch(r"v\d+\w*", version) else {group}
            if resource in names and resource_type.group in groups:
                return resource_type
    known = ", ".join(
        t.short_names[0] if t.short_names else t.plural for t in RESOURCE_TYPES if t.stored
    )
    raise IstiolabError(
        f'error: the server doesn\'t have a resource type "{name}"',
        fix=f"name a kind the sandbox serves (or its kubectl short name): {known}, pods",
    )


class Key(NamedTuple):
    group: str
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


# --------------------------------------------------------------------------------------------
# Stored objects and results


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class StoredObject:
    """One object as the store holds it: the applied data (with the store's defaults) and the
    bookkeeping the API server adds (generation, resourceVersion, uid, creationTimestamp)."""

    type: ResourceType
    data: Mapping[str, Any]
    generation: int = 1
    resource_version: int = 0
    uid: str = ""
    created: str = ""
    last_applied: Mapping[str, Any] | None = None

    @property
    def kind(self) -> str:
        return self.type.kind

    @property
    def group(self) -> str:
        return self.type.group

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion", ""))

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.data.get("metadata")
        return value if isinstance(value, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "")) if self.type.namespaced else ""

    @property
    def labels(self) -> Mapping[str, str]:
        value = self.metadata.get("labels")
        return value if isinstance(value, dict) else {}

    @property
    def annotations(self) -> Mapping[str, str]:
        value = self.metadata.get("annotations")
        return value if isinstance(value, dict) else {}

    @property
    def spec(self) -> Mapping[str, Any]:
        value = self.data.get("spec")
        return value if isinstance(value, dict) else {}

    @property
    def key(self) -> Key:
        return Key(self.group, self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """`deployment.apps/reviews-v1`."""
        return self.type.ref(self.name)

    def manifest(self) -> dict[str, Any]:
        """The object as `kubectl get -o yaml` shows it: the data plus the server's fields."""
        data = copy.deepcopy(dict(self.data))
        metadata = data.setdefault("metadata", {})
        metadata["uid"] = self.uid
        metadata["resourceVersion"] = str(self.resource_version)
        metadata["generation"] = self.generation
        metadata["creationTimestamp"] = self.created
        return data

    def document(self) -> Document:
        """The object as validation reads a known resource."""
        return Document(copy.deepcopy(dict(self.data)), file=f"(applied) {self.ref}")


@dataclass(frozen=True)
class Outcome:
    """What one apply did to one object, as kubectl says it."""

    ref: str  # deployment.apps/reviews-v1
    action: str  # created, configured, unchanged
    key: Key

    def __str__(self) -> str:
        return f"{self.ref} {self.action}"


@dataclass
class ApplyResult:
    """The report of an apply, and if it was valid what happened to each object."""

    report: Report
    outcomes: list[Outcome] = field(default_factory=list)
    revision: int = 0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def changed(self) -> bool:
        return any(o.action != "unchanged" for o in self.outcomes)

    def lines(self) -> list[str]:
        suffix = " (server dry run)" if self.dry_run else ""
        return [f"{outcome}{suffix}" for outcome in self.outcomes]


@dataclass
class DeleteResult:
    """`deployment.apps "reviews-v1" deleted` lines, and the NotFound errors of the others."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    revision: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class LabelResult:
    line: str  # namespace/default labeled | namespace/default not labeled
    changed: bool
    warnings: list[str] = field(default_factory=list)


class NotFoundError(IstiolabError):
    """The object is not in the store; the message is the API server's."""


# --------------------------------------------------------------------------------------------
# Names and labels, checked as the API server checks them

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def label_key_problem(key: str) -> str:
    """Why `key` is not a valid label key (Kubernetes' qualified name), or ""."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return "the prefix before '/' must be a lowercase DNS subdomain (e.g. 'example.com')"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            "the name part must be 63 characters or less, consist of alphanumeric characters, "
            "'-', '_' or '.', and start and end with an alphanumeric character"
        )
    return ""


def label_value_problem(value: str) -> str:
    """Why `value` is not a valid label value, or ""."""
    if value == "" or (len(value) <= 63 and _LABEL_NAME.fullmatch(value)):
        return ""
    return (
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
        "or '.', and must start and end with an alphanumeric character (63 characters or less)"
    )


def _name_problem(kind: str, name: str) -> str:
    if kind == "Service":
        if len(name) <= 63 and _DNS_1035_LABEL.fullmatch(name):
            return ""
        return (
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name')"
        )
    if kind == "Namespace":
        if len(name) <= 63 and _DNS_LABEL.fullmatch(name):
            return ""
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name')"
        )
    if len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name):
        return ""
    return (
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
        "or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
    )


def finding_at(
    document: Document,
    code: str,
    message: str,
    *,
    path: Sequence[str | int] = (),
    fix: str = "",
    severity: Severity = Severity.ERROR,
) -> Finding:
    """A finding located at a field of `document` (for codes validation does not list)."""
    return Finding(
        code=code,
        message=message,
        fix=fix,
        file=document.file,
        line=document.line_of(path),
        document=document.index,
        resource=document.ref,
        path=format_path(path),
        severity=severity,
    )


def match_selector(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels."""
    match_labels = selector.get("matchLabels") or {}
    if isinstance(match_labels, dict) and any(
        labels.get(str(k)) != str(v) for k, v in match_labels.items()
    ):
        return False
    for expression in selector.get("matchExpressions") or []:
        if not isinstance(expression, dict):
            continue
        key = str(expression.get("key", ""))
        operator = expression.get("operator")
        values = [str(v) for v in expression.get("values") or []]
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# --------------------------------------------------------------------------------------------
# Reading -f and -k


def load_documents(
    paths: Iterable[str | Path] = (),
    kustomize_dirs: Iterable[str | Path] = (),
    *,
    recursive: bool = False,
    stdin: str | None = None,
) -> Loaded:
    """What `kubectl apply -f PATH ... -k DIR ...` would send, read with istiolab.validation.

    `-f` takes files and directories (a directory's *.yaml, *.yml and *.json files, in name order,
    and its subdirectories only with `recursive`, like kubectl -R; a kustomization in it is not
    built, as kubectl -f does not build one); `-f -` reads `stdin`. `-k` builds a kustomization
    with `kubectl kustomize`. Raises IstiolabError for a path that does not exist, a -k directory
    without a kustomization, or kubectl missing; problems inside the files are findings.
    """
    loaded = Loaded()
    files: list[Path | str] = []
    for given in paths:
        if str(given) == "-":
            if stdin is None:
                stdin = sys.stdin.read()
            loaded.add(load_text(stdin, "<stdin>"))
            continue
        path = Path(given)
        if not path.exists():
            raise IstiolabError(
                f'error: the path "{given}" does not exist',
                fix="check the path (it is relative to the directory you run istiolab in)",
            )
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(
                p
                for p in path.glob(pattern)
                if p.is_file()
                and p.suffix in (*YAML_SUFFIXES, ".json")
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise IstiolabError(
                    f"error: no objects passed to apply: {given} holds no .yaml, .yml or .json "
                    "files" + ("" if recursive else " (subdirectories are read only with -R)"),
                    fix=f"give the files themselves, or -k {given} if it is a kustomization",
                )
            files.extend(Path(str(given)) / p.relative_to(path) for p in found)
        else:
            files.append(given if isinstance(given, str) else path)
    if files:
        loaded.add(load_paths(files, kustomize=False))
    for given in kustomize_dirs:
        path = Path(given)
        if not path.is_dir():
            raise IstiolabError(
                f'error: must build at directory: "{given}" is not a directory',
                fix="-k takes a directory that holds a kustomization.yaml; use -f for files",
            )
        if not is_kustomization_dir(path):
            raise IstiolabError(
                "error: unable to find one of 'kustomization.yaml', 'kustomization.yml' or "
                f"'Kustomization' in directory '{given}'",
                fix=f"use -f {given} for a directory of plain YAML files",
            )
        loaded.add(build_kustomization(path, str(given)))
    return loaded


# --------------------------------------------------------------------------------------------
# Persistence


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON so that a reader (or a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8"
    ) as out:
        json.dump(data, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    try:
        Path(out.name).replace(path)
    except OSError:
        Path(out.name).unlink(missing_ok=True)
        raise


def read_state_json(path: Path, expected_format: int) -> dict[str, Any] | None:
    """A state file written by write_json_atomically, None if absent; a clear error if broken."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IstiolabError(
            f"cannot read the sandbox state {path}: {exc.strerror or exc}",
            fix="check the permissions of the state directory",
        ) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        data = None
        problem = f"it is not valid JSON ({exc})"
    else:
        problem = "it was written by another version of istiolab"
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise IstiolabError(
            f"cannot read the sandbox state {path}: {problem}",
            fix=f"delete {path} (the sandbox then starts empty) and apply the stage again, "
            "e.g. istiolab apply -k manifests/stages/00-bookinfo",
        )
    return data


# --------------------------------------------------------------------------------------------
# Merging an applied object with the live one


_MERGED_MAPS: tuple[tuple[str, ...], ...] = (
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("spec", "template", "metadata", "annotations"),
)


def _get_map(data: Mapping[str, Any] | None, path: Sequence[str]) -> dict[str, Any] | None:
    node: Any = data
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, dict) else None


def _set_map(data: dict[str, Any], path: Sequence[str], value: dict[str, Any]) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if not value:
                return
            child = node[part] = {}
        node = child
    if value:
        node[path[-1]] = value
    else:
        node.pop(path[-1], None)


def _three_way_merge(
    applied: dict[str, Any], live: Mapping[str, Any], last_applied: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`applied`, keeping the label and annotation keys set on the live object by other means
    (istiolab label, rollout restart) than the last applied file."""
    merged = copy.deepcopy(applied)
    for path in _MERGED_MAPS:
        live_map = _get_map(live, path) or {}
        owned = _get_map(last_applied, path) or {}
        result = dict(_get_map(merged, path) or {})
        for key, value in live_map.items():
            if key not in result and key not in owned:
                result[key] = value
        if _get_map(merged, path) is not None or result:
            _set_map(merged, path, result)
    return merged


def _without_metadata(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("metadata", "status")}


# --------------------------------------------------------------------------------------------
# The store


class Store:
    """The resources of the sandbox, validated on the way in and kept in `state_dir`."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        """The store kept in `state_dir` (loaded if it holds one), or in memory if None."""
        self._lock = threading.RLock()
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._objects: dict[Key, StoredObject] = {}
        self._revision = 0
        state = read_state_json(self._file, STATE_FORMAT) if self._file else None
        if state is None:
            for name in BUILTIN_NAMESPACES:
                obj = self._new_object(
                    type_of("", "Namespace"),
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                    resource_version=0,
                    last_applied=None,
                )
                self._objects[obj.key] = obj
        else:
            self._restore(state)

    @classmethod
    def load(cls, state_dir: str | Path) -> Store:
        """The store a previous control plane left in `state_dir` (a fresh one if none)."""
        return cls(state_dir)

    @property
    def state_dir(self) -> Path | None:
        return self._state_dir

    @property
    def _file(self) -> Path | None:
        return self._state_dir / STATE_FILE if self._state_dir else None

    @property
    def revision(self) -> int:
        """Grows by one with every change: the configuration version."""
        return self._revision

    # ---------------------------------------------------------------- reading

    def objects(self) -> list[StoredObject]:
        """Every object, in a stable order (kind, namespace, name)."""
        with self._lock:
            return sorted(self._objects.values(), key=lambda o: (o.kind, o.group, *o.key[2:]))

    def get(
        self, kind: str, namespace: str | None = None, name: str | None = None
    ) -> list[StoredObject]:
        """`kubectl get KIND [NAME] [-n NAMESPACE]`: the objects of a kind (any kubectl alias).

        Without a name, `namespace` None lists every namespace (kubectl -A). With a name, the one
        object (namespace None means default), or NotFoundError with the API server's message.
        """
        resource_type = self._stored_type(kind)
        with self._lock:
            if name is not None:
                return [self._require(resource_type, namespace, name)]
            return [
                obj
                for obj in self.objects()
                if obj.type == resource_type
                and (
                    namespace is None or not resource_type.namespaced or obj.namespace == namespace
                )
            ]

    def find(self, kind: str, namespace: str | None, name: str) -> StoredObject | None:
        """One object, or None."""
        resource_type = self._stored_type(kind)
        with self._lock:
            return self._objects.get(self._key(resource_type, namespace, name))

    def documents(self) -> list[Document]:
        """Everything applied, as validation's known resources."""
        return [obj.document() for obj in self.objects()]

    # ---------------------------------------------------------------- apply

    def validate(
        self, documents: Sequence[Document] | Loaded, *, namespace: str | None = None
    ) -> Report:
        """The report an apply of `documents` would give, changing nothing."""
        return self.apply(documents, namespace=namespace, dry_run=True).report

    def apply(
        self,
        documents: Sequence[Document] | Loaded,
        *,
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> ApplyResult:
        """`kubectl apply`: all of `documents` or none of them.

        `namespace` is kubectl's -n: the namespace of objects that name none (an object naming
        another one is an IstiolabError, as with kubectl). The result's report holds every
        finding; when it has an error nothing changed and `outcomes` is empty.
        """
        loaded = documents if isinstance(documents, Loaded) else Loaded(documents=list(documents))
        with self._lock:
            docs = [self._with_namespace(d, namespace) for d in loaded.documents]
            if not docs and not loaded.findings:
                raise IstiolabError(
                    "error: no objects passed to apply",
                    fix="give a file or directory with Kubernetes or Istio resources in it",
                )
            known = self.documents()
            report = validate_documents(docs, known, skipped=loaded.skipped)
            report.extend(loaded.findings)
            invalid = {
                (f.file, f.document, f.resource) for f in report.errors if f.code in _SCHEMA_CODES
            }
            checked = [d for d in docs if (d.file, d.index, d.ref) not in invalid]
            report.extend(self._api_findings(checked, docs))
            from .registry import admit  # the registry knows which workloads it can run

            report.extend(admit(checked, [*known, *docs]))
            if not report.ok:
                return ApplyResult(report, [], self._revision, dry_run)
            staged, outcomes = self._stage(docs)
            if not dry_run and any(o.action != "unchanged" for o in outcomes):
                self._commit(staged)
            return ApplyResult(report, outcomes, self._revision, dry_run)

    def _with_namespace(self, document: Document, namespace: str | None) -> Document:
        if namespace is None or document.kind in CLUSTER_SCOPED_KINDS:
            return document
        if not isinstance(document.data, dict):
            return document
        given = document.metadata.get("namespace")
        if given and given != namespace:
            raise IstiolabError(
                f'error: the namespace from the provided object "{given}" does not match the '
                f"namespace \"{namespace}\". You must pass '--namespace={given}' to perform this "
                "operation.",
                fix=f"drop -n {namespace}, or remove `namespace: {given}` from {document.ref} "
                f"in {document.file}",
            )
        if given:
            return document
        data = copy.deepcopy(document.data)
        if not isinstance(data.get("metadata"), dict):
            return document
        data["metadata"]["namespace"] = namespace
        return Document(data, document.file, document.index, document.line, document.lines)

    def _api_findings(
        self, documents: Sequence[Document], batch: Sequence[Document]
    ) -> Iterator[Finding]:
        """What the API server (and the sandbox) refuse beyond the schemas."""
        namespaces = {k.name for k in self._objects if k.kind == "Namespace" and not k.group}
        namespaces |= {d.name for d in batch if d.kind == "Namespace" and d.api_version == "v1"}
        for document in documents:
            resource_type = type_of(document.group, document.kind)
            if not resource_type.stored or not (
                _is_config_group(document.group)
                or (document.group in ("", "apps") and document.kind in SANDBOX_KUBERNETES_KINDS)
            ):
                yield self._unsupported_kind(document)
                continue
            problem = _name_problem(document.kind, document.name)
            if document.name and problem:
                yield finding_at(
                    document,
                    SCHEMA_VALIDATION_ERROR,
                    f'Schema validation error: metadata.name: Invalid value: "{document.name}": '
                    f"{problem}",
                    path=("metadata", "name"),
                    fix="Use lower case letters, digits and '-' (e.g. reviews-v2).",
                )
            yield from _label_findings(document, ("metadata", "labels"))
            if resource_type.namespaced and document.namespace not in namespaces:
                yield finding_at(
                    document,
                    REFERENCED_RESOURCE_NOT_FOUND,
                    f'namespaces "{document.namespace}" not found',
                    path=("metadata", "namespace"),
                    fix=f"Create the namespace first (kind: Namespace, name: "
                    f"{document.namespace}, in this apply or an earlier one), or correct "
                    "metadata.namespace.",
                )
            if document.kind == "Deployment" and document.group == "apps":
                yield from self._deployment_findings(document)
            yield from _mesh_feature_findings(document)

    def _unsupported_kind(self, document: Document) -> Finding:
        if document.kind == "Pod" and not document.group:
            fix = (
                "Put the pod's template in a Deployment (spec.template): the sandbox creates "
                "pods from Deployments, as a cluster's controllers do."
            )
        else:
            fix = (
                "The sandbox serves Namespaces, Services, ServiceAccounts, Deployments, "
                "ConfigMaps and Secrets, plus every Istio and Gateway API kind. Use the kind "
                f"target (a real cluster) for {document.kind}."
            )
        return finding_at(
            document,
            SANDBOX_UNSUPPORTED,
            f"the sandbox does not serve {document.api_version} {document.kind}",
            path=("kind",),
            fix=fix,
        )

    def _deployment_findings(self, document: Document) -> Iterator[Finding]:
        spec = document.spec
        selector = spec.get("selector")
        template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
        metadata = template.get("metadata") if isinstance(template.get("metadata"), dict) else {}
        labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
        yield from _label_findings(document, ("spec", "template", "metadata", "labels"))
        if isinstance(selector, dict):
            if not selector.get("matchLabels") and not selector.get("matchExpressions"):
                yield finding_at(
                    document,
                    SCHEMA_VALIDATION_ERROR,
                    "Schema validation error: spec.selector: Invalid value: empty selector is "
                    "invalid for deployment",
                    path=("spec", "selector"),
                    fix="Select the pods by their labels: `matchLabels:` with the app and "
                    "version labels of spec.template.metadata.labels.",
                )
            elif not match_selector(selector, {str(k): str(v) for k, v in labels.items()}):
                yield finding_at(
                    document,
                    SCHEMA_VALIDATION_ERROR,
                    "Schema validation error: spec.template.metadata.labels: Invalid value: "
                    f"{json.dumps(labels, sort_keys=True)}: `selector` does not match template "
                    "`labels`",
                    path=("spec", "template", "metadata", "labels"),
                    fix="Give the pod template every label spec.selector.matchLabels asks for, "
                    "with the same values.",
                )
        existing = self._objects.get(Key("apps", "Deployment", document.namespace, document.name))
        if (
            existing is not None
            and isinstance(selector, dict)
            and existing.spec.get("selector") != selector
        ):
            yield finding_at(
                document,
                SCHEMA_VALIDATION_ERROR,
                "Schema validation error: spec.selector: Invalid value: "
                f"{json.dumps(selector, sort_keys=True)}: field is immutable",
                path=("spec", "selector"),
                fix="A Deployment's selector cannot change: keep the one applied before, or "
                f"delete the Deployment first (istiolab delete deployment {document.name} "
                f"-n {document.namespace}) and apply it again.",
            )

    def _stage(self, documents: Sequence[Document]) -> tuple[dict[Key, StoredObject], list]:
        staged = dict(self._objects)
        outcomes: list[Outcome] = []
        revision = self._revision + 1
        for document in documents:
            resource_type = type_of(document.group, document.kind)
            applied = self._normalized(resource_type, document.data)
            key = self._key(resource_type, document.namespace, document.name)
            existing = staged.get(key)
            if existing is None:
                obj = self._new_object(resource_type, applied, revision, applied)
                action = "created"
            else:
                data = _three_way_merge(applied, existing.data, existing.last_applied)
                if data == existing.data and applied == existing.last_applied:
                    obj = existing
                    action = "unchanged"
                elif data == existing.data:
                    # Only the record of what was applied changed (a label set by hand is now in
                    # the file too): kubectl's last-applied annotation changes, so "configured".
                    obj = replace(existing, resource_version=revision, last_applied=applied)
                    action = "configured"
                else:
                    generation = existing.generation + (
                        _without_metadata(data) != _without_metadata(existing.data)
                    )
                    obj = replace(
                        existing,
                        data=data,
                        generation=generation,
                        resource_version=revision,
                        last_applied=applied,
                    )
                    action = "configured"
            staged[key] = obj
            outcomes.append(Outcome(resource_type.ref(obj.name), action, key))
        return staged, outcomes

    def _normalized(self, resource_type: ResourceType, data: Mapping[str, Any]) -> dict[str, Any]:
        """The object as stored: namespace filled in (or dropped), namespaces labelled."""
        data = copy.deepcopy(dict(data))
        metadata = data.setdefault("metadata", {})
        if resource_type.namespaced:
            metadata["namespace"] = metadata.get("namespace") or DEFAULT_NAMESPACE
        else:
            metadata.pop("namespace", None)
        if resource_type.kind == "Namespace" and not resource_type.group:
            labels = metadata.get("labels") or {}
            metadata["labels"] = {**labels, NAMESPACE_NAME_LABEL: metadata.get("name", "")}
        return data

    def _new_object(
        self,
        resource_type: ResourceType,
        data: Mapping[str, Any],
        resource_version: int,
        last_applied: Mapping[str, Any] | None,
    ) -> StoredObject:
        return StoredObject(
            type=resource_type,
            data=self._normalized(resource_type, data),
            generation=1,
            resource_version=resource_version,
            uid=str(uuid.uuid4()),
            created=_timestamp(_now()),
            last_applied=last_applied,
        )

    def _commit(self, staged: dict[Key, StoredObject]) -> None:
        previous = (self._objects, self._revision)
        self._objects = staged
        self._revision += 1
        try:
            self._save()
        except OSError as exc:
            self._objects, self._revision = previous
            raise IstiolabError(
                f"cannot write the sandbox state to {self._file}: {exc.strerror or exc}",
                fix="check that the disk is not full and the state directory is writable; "
                "nothing was changed",
            ) from exc

    # ---------------------------------------------------------------- delete

    def delete(self, kind: str, namespace: str | None, name: str) -> str:
        """`kubectl delete KIND NAME`: the line kubectl prints, or NotFoundError.

        Deleting a Namespace deletes everything in it, as Kubernetes does.
        """
        resource_type = self._stored_type(kind)
        with self._lock:
            obj = self._require(resource_type, namespace, name)
            staged = dict(self._objects)
            self._remove(staged, obj)
            self._commit(staged)
            return f'{resource_type.name} "{obj.name}" deleted'

    def delete_documents(
        self,
        documents: Sequence[Document] | Loaded,
        *,
        namespace: str | None = None,
        ignore_not_found: bool = False,
    ) -> DeleteResult:
        """`kubectl delete -f FILE`: delete each object the documents name.

        Like kubectl, the objects that exist are deleted and each missing one is an error line
        (none with `ignore_not_found`); one revision covers the whole call.
        """
        loaded = documents if isinstance(documents, Loaded) else Loaded(documents=list(documents))
        result = DeleteResult()
        with self._lock:
            staged = dict(self._objects)
            for document in loaded.documents:
                document = self._with_namespace(document, namespace)
                if not document.kind or not document.name:
                    result.errors.append(
                        f"error: {document.file}: every object needs a kind and metadata.name "
                        "to be deleted"
                    )
                    continue
                resource_type = type_of(document.group, document.kind)
                key = self._key(resource_type, document.namespace, document.name)
                obj = staged.get(key)
                if obj is None:
                    if not ignore_not_found:
                        result.errors.append(
                            f'Error from server (NotFound): error when deleting "{document.file}"'
                            f': {resource_type.resource} "{document.name}" not found'
                        )
                    continue
                self._check_deletable(obj)
                self._remove(staged, obj)
                result.lines.append(f'{resource_type.name} "{obj.name}" deleted')
            if result.lines:
                self._commit(staged)
            result.revision = self._revision
        return result

    def _check_deletable(self, obj: StoredObject) -> None:
        if obj.kind == "Namespace" and not obj.group and obj.name in PROTECTED_NAMESPACES:
            raise IstiolabError(
                f'Error from server (Forbidden): namespaces "{obj.name}" is forbidden: this '
                "namespace may not be deleted",
                fix="delete the resources in it instead (istiolab delete -f FILE)",
            )

    def _remove(self, staged: dict[Key, StoredObject], obj: StoredObject) -> None:
        self._check_deletable(obj)
        del staged[obj.key]
        if obj.kind == "Namespace" and not obj.group:
            for key in [k for k in staged if k.namespace == obj.name]:
                del staged[key]

    # ---------------------------------------------------------------- label, restart

    def label(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        labels: Mapping[str, str | None] | Iterable[str],
        *,
        overwrite: bool = False,
    ) -> LabelResult:
        """`kubectl label KIND NAME key=value key2-`: set (value) or remove (None, `key-`).

        Changing a label that has another value needs `overwrite`, as kubectl's --overwrite.
        """
        resource_type = self._stored_type(kind)
        changes = parse_label_changes(labels)
        with self._lock:
            obj = self._require(resource_type, namespace, name)
            current = dict(obj.labels)
            if not overwrite:
                conflicts = [
                    f"'{key}' already has a value ({current[key]}), and --overwrite is false"
                    for key, value in changes.items()
                    if value is not None and key in current and current[key] != value
                ]
                if conflicts:
                    raise IstiolabError(
                        "error: " + "; ".join(conflicts),
                        fix="add --overwrite to replace the value",
                    )
            warnings = [
                f'label "{key}" not found.'
                for key, value in changes.items()
                if value is None and key not in current
            ]
            updated = dict(current)
            for key, value in changes.items():
                if value is None:
                    updated.pop(key, None)
                else:
                    updated[key] = value
            if updated == current:
                return LabelResult(f"{obj.ref} not labeled", False, warnings)
            data = copy.deepcopy(dict(obj.data))
            _set_map(data, ("metadata", "labels"), updated)
            staged = dict(self._objects)
            staged[obj.key] = replace(obj, data=data, resource_version=self._revision + 1)
            self._commit(staged)
            return LabelResult(f"{obj.ref} labeled", True, warnings)

    def rollout_restart(
        self,
        namespace: str = DEFAULT_NAMESPACE,
        name: str | None = None,
        *,
        now: datetime | None = None,
    ) -> list[str]:
        """`kubectl rollout restart deployment[/NAME] -n NAMESPACE`.

        Sets the pod template's kubectl.kubernetes.io/restartedAt annotation, as kubectl does: the
        template changes, so the registry replaces the pods (and decides injection anew).
        """
        with self._lock:
            if name is not None:
                targets = [self._require(resolve("deployment"), namespace, name)]
            else:
                targets = self.get("deployment", namespace)
                if not targets:
                    raise IstiolabError(
                        f"error: no objects passed to restart: no deployments in namespace "
                        f"{namespace}",
                        fix="apply the Deployments first, or name the namespace they are in (-n)",
                    )
            moment = (now or _now()).replace(microsecond=0)
            staged = dict(self._objects)
            lines = []
            for obj in targets:
                annotations = _get_map(obj.data, _MERGED_MAPS[2]) or {}
                stamp = moment
                previous = annotations.get(RESTARTED_AT)
                if isinstance(previous, str):
                    try:
                        last = datetime.strptime(previous, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                    except ValueError:
                        last = None
                    if last is not None and last >= stamp:
                        stamp = last + timedelta(seconds=1)  # a second restart, same second
                data = copy.deepcopy(dict(obj.data))
                _set_map(data, _MERGED_MAPS[2], {**annotations, RESTARTED_AT: _timestamp(stamp)})
                staged[obj.key] = replace(
                    obj,
                    data=data,
                    generation=obj.generation + 1,
                    resource_version=self._revision + 1,
                )
                lines.append(f"{obj.ref} restarted")
            self._commit(staged)
            return lines

    # ---------------------------------------------------------------- helpers

    def _stored_type(self, kind: str) -> ResourceType:
        resource_type = resolve(kind)
        if not resource_type.stored:
            raise IstiolabError(
                f"{resource_type.plural} are not stored resources: the registry runs them",
                fix="ask the registry (Registry.pods) for pods",
            )
        return resource_type

    def _key(self, resource_type: ResourceType, namespace: str | None, name: str) -> Key:
        ns = (namespace or DEFAULT_NAMESPACE) if resource_type.namespaced else ""
        return Key(resource_type.group, resource_type.kind, ns, name)

    def _require(
        self, resource_type: ResourceType, namespace: str | None, name: str
    ) -> StoredObject:
        obj = self._objects.get(self._key(resource_type, namespace, name))
        if obj is None:
            where = (
                f" in namespace {namespace or DEFAULT_NAMESPACE}"
                if resource_type.namespaced
                else ""
            )
            raise NotFoundError(
                resource_type.not_found(name),
                fix=f"list what exists{where}: istiolab get {resource_type.plural}"
                + (f" -n {namespace or DEFAULT_NAMESPACE}" if resource_type.namespaced else ""),
            )
        return obj

    def _save(self) -> None:
        if self._file is None:
            return
        write_json_atomically(
            self._file,
            {
                "format": STATE_FORMAT,
                "revision": self._revision,
                "objects": [
                    {
                        "group": obj.group,
                        "kind": obj.kind,
                        "generation": obj.generation,
                        "resourceVersion": obj.resource_version,
                        "uid": obj.uid,
                        "created": obj.created,
                        "data": obj.data,
                        "lastApplied": obj.last_applied,
                    }
                    for obj in self.objects()
                ],
            },
        )

    def _restore(self, state: Mapping[str, Any]) -> None:
        try:
            self._revision = int(state["revision"])
            for entry in state["objects"]:
                obj = StoredObject(
                    type=type_of(entry["group"], entry["kind"]),
                    data=entry["data"],
                    generation=int(entry["generation"]),
                    resource_version=int(entry["resourceVersion"]),
                    uid=str(entry["uid"]),
                    created=str(entry["created"]),
                    last_applied=entry.get("lastApplied"),
                )
                self._objects[obj.key] = obj
        except (KeyError, TypeError, ValueError) as exc:
            raise IstiolabError(
                f"cannot read the sandbox state {self._file}: an entry is incomplete ({exc!r})",
                fix=f"delete {self._file} (the sandbox then starts empty) and apply the stage "
                "again, e.g. istiolab apply -k manifests/stages/00-bookinfo",
            ) from exc


def parse_label_changes(labels: Mapping[str, str | None] | Iterable[str]) -> dict[str, str | None]:
    """`key=value` and `key-` arguments (or a mapping, None removing) -> key: value or None."""
    changes: dict[str, str | None] = {}
    if isinstance(labels, Mapping):
        items = list(labels.items())
    else:
        items = []
        for argument in labels:
            if "=" in argument:
                key, _, value = argument.partition("=")
                items.append((key, value))
            elif argument.endswith("-"):
                items.append((argument[:-1], None))
            else:
                raise IstiolabError(
                    f"error: invalid label spec: {argument}",
                    fix="write key=value to set a label, key- to remove it",
                )
    if not items:
        raise IstiolabError(
            "error: at least one label update is required",
            fix="give key=value to set a label, key- to remove it",
        )
    for key, value in items:
        problem = label_key_problem(key)
        if problem:
            raise IstiolabError(f'error: invalid label key "{key}": {problem}')
        if value is not None:
            problem = label_value_problem(value)
            if problem:
                raise IstiolabError(f'error: invalid label value: "{key}={value}": {problem}')
        if key in changes and (changes[key] is None) != (value is None):
            raise IstiolabError("error: can not both modify and remove a label in the same command")
        changes[key] = value
    return changes


def _label_findings(document: Document, path: tuple[str, ...]) -> Iterator[Finding]:
    labels = _get_map(document.data, path) or {}
    for key, value in labels.items():
        problem = label_key_problem(str(key))
        if problem:
            yield finding_at(
                document,
                SCHEMA_VALIDATION_ERROR,
                f'Schema validation error: {format_path(path)}: Invalid value: "{key}": {problem}',
                path=(*path, str(key)),
                fix="Use a label key like app, version or example.com/team.",
            )
        elif isinstance(value, str) and label_value_problem(value):
            yield finding_at(
                document,
                SCHEMA_VALIDATION_ERROR,
                f"Schema validation error: {format_path((*path, str(key)))}: Invalid value: "
                f'"{value}": {label_value_problem(value)}',
                path=(*path, str(key)),
                fix='Quote values YAML would read otherwise ("true", "1.0") and keep to letters, '
                "digits, '-', '_' and '.'.",
            )


def _mesh_feature_findings(document: Document) -> Iterator[Finding]:
    """Istio features the sandbox's mesh does not have, refused at apply time rather than
    accepted and silently ignored: a learner would otherwise wait for an effect that never comes.
    """
    from .translate import authorization, tracing  # the translator's knowledge, loaded on demand

    data = document.data if isinstance(document.data, dict) else {}
    spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
    if document.group == "security.istio.io" and document.kind == "AuthorizationPolicy":
        problem = authorization.unsupported(data)
        if problem:
            yield finding_at(
                document,
                SANDBOX_UNSUPPORTED,
                f"the sandbox cannot enforce this policy: {problem}",
                path=("spec",),
                fix="Change the policy as the message says, or run it on the kind target.",
            )
    elif document.group == "telemetry.istio.io" and document.kind == "Telemetry":
        for name in tracing.unknown_providers(data):
            yield finding_at(
                document,
                SANDBOX_UNSUPPORTED,
                f'tracing provider "{name}" is not one of the mesh\'s extensionProviders',
                path=("spec", "tracing"),
                fix=f"Use the provider {tracing.ZIPKIN_PROVIDER}: the sandbox's Zipkin collector "
                "(the course's Istio install defines the same one).",
            )
    elif document.group == "networking.istio.io" and document.kind == "DestinationRule":
        for path, tls in _tls_settings(spec):
            if tls.get("credentialName"):
                yield finding_at(
                    document,
                    SANDBOX_UNSUPPORTED,
                    "tls.credentialName reads a Kubernetes Secret through the proxy's SDS "
                    "agent, which the sandbox's proxies do not have",
                    path=(*path, "credentialName"),
                    fix="Name the files instead: clientCertificate, privateKey, caCertificates.",
                )


def _tls_settings(spec: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], dict]]:
    """Every `tls` block of a DestinationRule: top level, per port, per subset."""
    policies: list[tuple[tuple[str | int, ...], Any]] = [
        (("spec", "trafficPolicy"), spec.get("trafficPolicy"))
    ]
    for index, subset in enumerate(spec.get("subsets") or ()):
        if isinstance(subset, dict):
            policies.append(
                (("spec", "subsets", index, "trafficPolicy"), subset.get("trafficPolicy"))
            )
    for path, policy in policies:
        if not isinstance(policy, dict):
            continue
        if isinstance(policy.get("tls"), dict):
            yield (*path, "tls"), policy["tls"]
        for index, entry in enumerate(policy.get("portLevelSettings") or ()):
            if isinstance(entry, dict) and isinstance(entry.get("tls"), dict):
                yield (*path, "portLevelSettings", index, "tls"), entry["tls"]
