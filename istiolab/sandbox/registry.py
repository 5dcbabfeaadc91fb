"""Kubernetes' controllers for the sandbox: from applied Services and Deployments to running pods.

What a cluster's Deployment and ReplicaSet controllers, the sidecar-injection webhook and the
kubelets do together, done here for processes on 127.0.0.1:

- Services (store) -> `model.Service`: name, namespace, ports, selector, labels.
- Deployments (store) -> `model.Pod`s, kept between reconciles: a Deployment with N replicas has
  N pods named `<deployment>-<pod-template-hash>-<5 random characters>`, as in Kubernetes. A pod
  lives until its Deployment's pod template changes (a new hash: new labels, a new image, a
  `rollout restart`, which sets an annotation in the template), the replicas shrink (the newest
  pods go first), or the Deployment (or its namespace) is deleted.
- Sidecar injection is decided once, when a pod is created, from its namespace's labels and its
  own labels and annotations (see `injection_decision` for Istio's rules). Labelling a namespace
  does nothing to running pods; `istiolab rollout restart` replaces them, and the new ones get
  the sidecar. An injected pod gets the labels Istio's injector adds (security.istio.io/tlsMode,
  service.istio.io/canonical-name and -revision).
- Every pod gets its own ports from a `PortAllocator`: `app_port`, plus the sidecar's inbound,
  outbound and admin ports when injected (model.py says what each is for).
- Each pod's `AppLaunch` says how to run it: `python -m bookinfo serve <service>` with the
  environment the container would have (its image's variables, the Deployment's env, HOSTNAME
  set to the pod name). Apps reach other services by name through their sidecar (HTTP_PROXY,
  which the control plane sets: `AppLaunch.http_proxy`), so no *_SERVICE_PORT variables.

Pods, their ports and injection decisions are kept in the state directory (pods.json and
ports.json), so a restarted control plane finds the same pods with the same names and ports.

What of a Deployment the sandbox uses: metadata (name, namespace), spec.replicas (default 1),
spec.selector (checked by the store), the pod template's labels and annotations,
serviceAccountName, hostNetwork (never injected), and of its one container: image, env and
ports. The image must be one of Bookinfo's (Istio's own names, docker.io/istio/ or
registry.istio.io/release/, or this course's istiolab/): the sandbox runs that service and
version from this repository. Accepted and ignored, because a process on 127.0.0.1 has no use for
them: resources, probes, securityContext, volumes and volumeMounts, imagePullPolicy, strategy,
minReadySeconds, revisionHistoryLimit, progressDeadlineSeconds, paused, nodeSelector, affinity,
tolerations, terminationGracePeriodSeconds, initContainers, and every other pod-spec field.
Refused at apply (`admit`), because the sandbox would run something else than the file says: an
image that is not Bookinfo's, more than one container, command or args, envFrom, and env
valueFrom other than a fieldRef the sandbox can answer (metadata.name, metadata.namespace,
metadata.uid, metadata.labels['k'], metadata.annotations['k'], spec.serviceAccountName,
spec.nodeName, status.podIP(s), status.hostIP(s)).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import sys
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bookinfo import variants

from ..errors import IstiolabError
from ..validation.findings import REFERENCED_RESOURCE_NOT_FOUND, Finding, Severity
from ..validation.loading import Document
from .model import Gateway, Mesh, Pod, Service, ServicePort, SidecarPorts
from .store import (
    SANDBOX_UNSUPPORTED,
    NotFoundError,
    Store,
    StoredObject,
    finding_at,
    read_state_json,
    write_json_atomically,
)

PODS_FILE = "pods.json"
PORTS_FILE = "ports.json"
STATE_FORMAT = 1
HOST = "127.0.0.1"
NODE_NAME = "sandbox"
DEFAULT_PORT_RANGE = (20000, 24999)  # below Linux's ephemeral ports (32768-60999)

# Repositories of the Bookinfo images: Istio's (Docker Hub, and its own registry) and this
# course's (versions.env BOOKINFO_IMAGE_PREFIX; tests check the two agree).
IMAGE_REPOSITORIES = (
    "docker.io/istio/",
    "istio/",
    "registry.istio.io/release/",
    "istiolab/",
    "docker.io/istiolab/",
)
IMAGE_NAME_PREFIX = "examples-bookinfo-"

# Kubernetes' alphabet for generated names (k8s.io/apimachinery/pkg/util/rand: no vowels, no
# look-alike digits), used for the pod-template-hash and the pods' random suffix.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
POD_TEMPLATE_HASH = "pod-template-hash"

# --------------------------------------------------------------------------------------------
# Sidecar injection, as Istio's default installation decides it
#
# Istio documents the policy in "Installing the Sidecar > Controlling the injection policy"
# (istio.io/latest/docs/setup/additional-setup/sidecar-injection/): namespace label
# istio-injection (enabled | disabled), pod label sidecar.istio.io/inject ("true" | "false");
# either one disabled: not injected; either one enabled: injected; neither: not injected (the
# default install leaves enableNamespacesByDefault off). The details below are the webhook's:
#
# 1. The API server calls the injector only if one of the four webhooks of the default revision
#    matches (istio/istio manifests/charts/istio-control/istio-discovery/templates/
#    mutatingwebhook.yaml, as installed: namespace., object., rev.namespace., rev.object.
#    sidecar-injector.istio.io). Their selectors look at the namespace's labels and the pod's
#    LABELS only:
#      - namespace: the namespace has istio-injection=enabled, the pod label
#        sidecar.istio.io/inject is not "false";
#      - object: the namespace has neither istio-injection nor istio.io/rev, the pod has the label
#        sidecar.istio.io/inject=true and no istio.io/rev label;
#      - rev.namespace: the namespace has istio.io/rev=default and no istio-injection label, the
#        pod label sidecar.istio.io/inject is not "false";
#      - rev.object: the namespace has neither label, the pod has istio.io/rev=default and its
#        sidecar.istio.io/inject label is not "false".
#    So the sidecar.istio.io/inject ANNOTATION cannot opt a pod in (no webhook looks at it), and
#    a namespace labelled istio-injection=disabled keeps every pod out.
# 2. The injector then applies injectRequired (istio/istio pkg/kube/inject/inject.go): never in
#    kube-system, kube-public, kube-node-lease or local-path-storage (IgnoredNamespaces, in
#    pkg/kube/inject/webhook.go), never with hostNetwork; then the pod's sidecar.istio.io/inject
#    label, or if it has none its annotation ("the label is the new API; if both are present we
#    prefer the label"): y, yes, true or on (any case) inject, empty means the policy's default,
#    which is "enabled" in the default install (values.global.proxy.autoInject), and any other
#    value (false, no, ...) does not inject. This is how the annotation opts a pod OUT in an
#    enabled namespace.

INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
INJECT_KEY = "sidecar.istio.io/inject"  # a pod label, and (older API) a pod annotation
DEFAULT_REVISION = "default"
IGNORED_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)
_INJECT_TRUE = frozenset({"y", "yes", "true", "on"})


@dataclass(frozen=True)
class InjectionDecision:
    injected: bool
    reason: str  # one sentence a hint can quote


def injection_decision(
    namespace: str,
    namespace_labels: Mapping[str, str],
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str] | None = None,
    *,
    host_network: bool = False,
) -> InjectionDecision:
    """Whether Istio's default installation injects a sidecar into a new pod, and why."""
    pod_annotations = pod_annotations or {}
    ns_injection = namespace_labels.get(INJECTION_LABEL)
    ns_revision = namespace_labels.get(REVISION_LABEL)
    pod_inject = pod_labels.get(INJECT_KEY)
    pod_revision = pod_labels.get(REVISION_LABEL)
    neither = ns_injection is None and ns_revision is None
    webhooks = {
        "namespace": ns_injection == "enabled" and pod_inject != "false",
        "object": neither and pod_inject == "true" and pod_revision is None,
        "rev.namespace": ns_revision == DEFAULT_REVISION
        and ns_injection is None
        and pod_inject != "false",
        "rev.object": neither and pod_revision == DEFAULT_REVISION and pod_inject != "false",
    }
    if not any(webhooks.values()):
        if ns_injection == "disabled":
            why = f"namespace {namespace} has the label istio-injection=disabled"
        elif ns_injection == "enabled" or (ns_revision == DEFAULT_REVISION and not ns_injection):
            why = 'its pod template has the label sidecar.istio.io/inject: "false"'
        elif ns_injection is not None:
            why = f"namespace {namespace} has istio-injection={ns_injection} (not enabled)"
        elif ns_revision is not None:
            why = f"namespace {namespace} names revision {ns_revision}, which is not installed"
        elif pod_annotations.get(INJECT_KEY, "").lower() in _INJECT_TRUE:
            why = (
                f"namespace {namespace} has no istio-injection label, and the "
                "sidecar.istio.io/inject annotation cannot opt a pod in (use the label)"
            )
        else:
            why = f"namespace {namespace} has no istio-injection=enabled label"
        return InjectionDecision(False, f"no sidecar: {why}")
    if namespace in IGNORED_NAMESPACES:
        return InjectionDecision(False, f"no sidecar: Istio never injects in {namespace}")
    if host_network:
        return InjectionDecision(False, "no sidecar: the pod uses the host network")
    value = pod_labels.get(INJECT_KEY, pod_annotations.get(INJECT_KEY, ""))
    source = "label" if INJECT_KEY in pod_labels else "annotation"
    if value and value.lower() not in _INJECT_TRUE:
        return InjectionDecision(
            False, f'no sidecar: its pod template has the {source} {INJECT_KEY}: "{value}"'
        )
    matched = next(name for name, hit in webhooks.items() if hit)
    why = {
        "namespace": f"namespace {namespace} has the label istio-injection=enabled",
        "object": f'its pod template has the label {INJECT_KEY}: "true"',
        "rev.namespace": f"namespace {namespace} has the label istio.io/rev=default",
        "rev.object": "its pod template has the label istio.io/rev=default",
    }[matched]
    return InjectionDecision(True, f"sidecar injected: {why}")


def injected_labels(labels: Mapping[str, str], deployment: str) -> dict[str, str]:
    """The labels Istio's injection template adds to a pod it injects
    (manifests/charts/istio-control/istio-discovery/files/injection-template.yaml)."""
    name = (
        labels.get("service.istio.io/canonical-name")
        or labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or deployment
    )
    revision = (
        labels.get("service.istio.io/canonical-revision")
        or labels.get("app.kubernetes.io/version")
        or labels.get("version")
        or "latest"
    )
    return {
        "security.istio.io/tlsMode": labels.get("security.istio.io/tlsMode", "istio"),
        "service.istio.io/canonical-name": name[:63].rstrip("-"),
        "service.istio.io/canonical-revision": revision,
    }


# --------------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class BookinfoImage:
    image: str
    service: str
    version: str
    tag: str

    @property
    def variant(self) -> variants.Variant:
        return variants.find(self.service, self.version)


class ImageError(ValueError):
    """An image the sandbox cannot run; the message says why, `fix` what to use."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def parse_image(image: str) -> BookinfoImage:
    """The Bookinfo service and version an image stands for, or ImageError.

    docker.io/istio/examples-bookinfo-reviews-v3:1.20.3, registry.istio.io/release/... and
    istiolab/examples-bookinfo-reviews-v3:0.1.0 are all reviews v3; the tag does not matter (the
    sandbox runs this repository's code). A digest (@sha256:...) is accepted and ignored.
    """
    reference = image.split("@", 1)[0]
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    repository, tag = (
        (reference[:colon], reference[colon + 1 :]) if colon > slash else (reference, "latest")
    )
    prefix = next((p for p in IMAGE_REPOSITORIES if repository.startswith(p)), None)
    name = repository[len(prefix) :] if prefix else ""
    if prefix is None or "/" in name or not name.startswith(IMAGE_NAME_PREFIX):
        raise ImageError(
            f"the sandbox runs Bookinfo's images only: {image} is not one",
            fix="Use a Bookinfo image: "
            f"docker.io/istio/{IMAGE_NAME_PREFIX}<service>-<version>:<tag> or "
            f"registry.istio.io/release/{IMAGE_NAME_PREFIX}... (Istio's), or "
            f"istiolab/{IMAGE_NAME_PREFIX}<service>-<version>:<tag> (this course's), e.g. "
            f"istiolab/{IMAGE_NAME_PREFIX}reviews-v3:0.1.0. Other images run on the kind target.",
        )
    rest = name[len(IMAGE_NAME_PREFIX) :]
    service = next((s for s in variants.SERVICES if rest.startswith(f"{s}-")), None)
    if service is None:
        raise ImageError(
            f"the sandbox runs Bookinfo's images only: {image} is not one "
            f"(Bookinfo's services are {', '.join(variants.SERVICES)})",
            fix=f"Name one of the services: {IMAGE_NAME_PREFIX}<service>-<version>.",
        )
    version = rest[len(service) + 1 :]
    try:
        variants.find(service, version)
    except LookupError as exc:
        raise ImageError(
            f"{image}: the sandbox has no such Bookinfo image: {exc}",
            fix="Use one of the versions listed.",
        ) from None
    return BookinfoImage(image, service, version, tag)


# --------------------------------------------------------------------------------------------
# Admission: what the sandbox refuses to run, checked at apply

_FIELD_REFS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.serviceAccountName",
        "spec.nodeName",
        "status.podIP",
        "status.podIPs",
        "status.hostIP",
        "status.hostIPs",
    }
)
_FIELD_REF_MAP = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pod_template(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(template metadata, template spec) of a Deployment's data."""
    template = _dict(_dict(data.get("spec")).get("template"))
    return _dict(template.get("metadata")), _dict(template.get("spec"))


def admit(documents: Sequence[Document], known: Iterable[Document] = ()) -> list[Finding]:
    """The sandbox's admission checks for a batch being applied (the store runs them).

    Errors for what the sandbox cannot run as written (see the module docstring); a warning for a
    Deployment whose ServiceAccount is not there, whose pods a cluster would not create either.
    `known` is everything the apply can see (applied before, or in the batch).
    """
    accounts = {
        (d.namespace, d.name) for d in known if d.kind == "ServiceAccount" and d.api_version == "v1"
    }
    findings: list[Finding] = []
    for document in documents:
        if document.kind == "Deployment" and document.group == "apps":
            findings.extend(_admit_deployment(document, accounts))
    return findings


def _admit_deployment(document: Document, accounts: set[tuple[str, str]]) -> Iterator[Finding]:
    _, pod_spec = _pod_template(document.data)
    base = ("spec", "template", "spec")
    containers = _list(pod_spec.get("containers"))
    if len(containers) != 1:
        yield finding_at(
            document,
            SANDBOX_UNSUPPORTED,
            f"the sandbox runs one container per pod (the Bookinfo service); this Deployment "
            f"has {len(containers)}",
            path=(*base, "containers"),
            fix="Keep the one Bookinfo container. The sandbox adds the sidecar itself when "
            "injection is on, so istio-proxy is never listed here.",
        )
    for i, container in enumerate(containers[:1]):
        container = _dict(container)
        where = (*base, "containers", i)
        image = container.get("image")
        foreign = False
        if isinstance(image, str):
            try:
                parse_image(image)
            except ImageError as exc:
                foreign = True
                yield finding_at(
                    document, SANDBOX_UNSUPPORTED, str(exc), path=(*where, "image"), fix=exc.fix
                )
        for name in ("command", "args"):
            if name in container and not foreign:  # for another image, the image is the problem
                yield finding_at(
                    document,
                    SANDBOX_UNSUPPORTED,
                    f"the sandbox runs the image's own command (python -m bookinfo serve); "
                    f"{name} is not supported",
                    path=(*where, name),
                    fix=f"Remove {name}: Bookinfo's images need none.",
                )
        if "envFrom" in container:
            yield finding_at(
                document,
                SANDBOX_UNSUPPORTED,
                "the sandbox does not read envFrom (ConfigMap or Secret variables)",
                path=(*where, "envFrom"),
                fix="List the variables under env: with value: each.",
            )
        for j, entry in enumerate(_list(container.get("env"))):
            value_from = _dict(entry).get("valueFrom")
            if value_from is None:
                continue
            field_path = _dict(_dict(value_from).get("fieldRef")).get("fieldPath")
            if isinstance(field_path, str) and (
                field_path in _FIELD_REFS or _FIELD_REF_MAP.fullmatch(field_path)
            ):
                continue
            yield finding_at(
                document,
                SANDBOX_UNSUPPORTED,
                "the sandbox answers env valueFrom only with a fieldRef to "
                + ", ".join(sorted(_FIELD_REFS))
                + ", metadata.labels['KEY'] or metadata.annotations['KEY']",
                path=(*where, "env", j, "valueFrom"),
                fix="Write the value itself (value: ...), or use one of those fieldRefs.",
            )
    account = _service_account(pod_spec)
    if account != "default" and (document.namespace, account) not in accounts:
        yield finding_at(
            document,
            REFERENCED_RESOURCE_NOT_FOUND,
            f'serviceaccount "{account}" not found: no pods will be created for this '
            "Deployment until it exists",
            path=(*base, "serviceAccountName"),
            fix=f"Apply the ServiceAccount {account} in namespace {document.namespace} (in the "
            "same apply is fine), or correct serviceAccountName.",
            severity=Severity.WARNING,
        )


def _service_account(pod_spec: Mapping[str, Any]) -> str:
    name = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount")
    return name if isinstance(name, str) and name else "default"


# --------------------------------------------------------------------------------------------
# Launching an app


@dataclass(frozen=True)
class AppLaunch:
    """How to start one pod's app: the command and the container's environment.

    `env` is what the container defines (its image's variables, then HOSTNAME, then the
    Deployment's env); `http_proxy` is the sidecar's outbound listener once the control plane
    knows it (http://127.0.0.1:<outbound_port>), "" for none.
    """

    pod: str
    namespace: str
    service: str
    version: str
    image: str
    app_port: int
    env: Mapping[str, str]
    http_proxy: str = ""

    @property
    def command(self) -> tuple[str, ...]:
        return (
            sys.executable,
            "-m",
            "bookinfo",
            "serve",
            self.service,
            "--host",
            HOST,
            "--port",
            str(self.app_port),
        )

    def with_proxy(self, url: str) -> AppLaunch:
        return replace(self, http_proxy=url)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The process environment: `base` (e.g. PATH), then `env`, then the proxy variables.

        With a proxy, NO_PROXY from `base` is dropped, so the app's calls cannot bypass the
        sidecar.
        """
        out = dict(base or {})
        out.update(self.env)
        if self.http_proxy:
            for name in ("NO_PROXY", "no_proxy"):
                out.pop(name, None)
            out["HTTP_PROXY"] = out["http_proxy"] = self.http_proxy
        return out


_VARIABLE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def _expand(value: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: earlier variables are replaced, $$ is a literal $."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return defined.get(match.group(1), match.group(0))

    return _VARIABLE.sub(substitute, value)


def container_env(
    entries: Iterable[Any],
    fields: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> dict[str, str]:
    """A container's env list as the kubelet resolves it (values and the fieldRefs `admit`
    allows; `fields` answers fieldPaths like metadata.name)."""
    env: dict[str, str] = {}
    for entry in entries:
        entry = _dict(entry)
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        if "valueFrom" in entry:
            path = _dict(_dict(entry["valueFrom"]).get("fieldRef")).get("fieldPath", "")
            match = _FIELD_REF_MAP.fullmatch(str(path))
            if match:
                source = labels if match.group(1) == "labels" else annotations
                env[name] = source.get(match.group(2), "")
            else:
                env[name] = fields.get(str(path), "")
            continue
        value = entry.get("value", "")
        env[name] = _expand(value if isinstance(value, str) else str(value), env)
    return env


# --------------------------------------------------------------------------------------------
# Ports


class PortAllocator:
    """Ports on 127.0.0.1 for the pods, one per owner (e.g. "default/reviews-v1-.../app").

    An owner keeps its port (also across a control-plane restart: ports.json), until released.
    New ports come from `first`..`last`, in turn (a released port is not handed out again at
    once, so a process still stopping cannot collide with its successor), skipping any port
    that something on this machine already listens on (a bind probe).
    """

    def __init__(
        self,
        first: int = DEFAULT_PORT_RANGE[0],
        last: int = DEFAULT_PORT_RANGE[1],
        *,
        state_dir: str | Path | None = None,
        host: str = HOST,
    ) -> None:
        if not 1024 <= first <= last <= 65535:
            raise IstiolabError(
                f"the sandbox's port range {first}-{last} is not a range of unprivileged ports",
                fix="choose a range within 1024-65535, first port first",
            )
        self.first, self.last, self.host = first, last, host
        self._file = Path(state_dir) / PORTS_FILE if state_dir is not None else None
        self._owners: dict[str, int] = {}
        # Where a new state directory starts handing out ports: a point of the range chosen by
        # its path, so two sandboxes (say, a learner's and the test suite's) starting at the same
        # moment do not both probe, find free and take the same ports.
        span = last - first + 1
        self._next = first + zlib.crc32(str(state_dir).encode()) % span if state_dir else first
        state = read_state_json(self._file, STATE_FORMAT) if self._file else None
        if state is not None:
            self._owners = {str(k): int(v) for k, v in state.get("owners", {}).items()}
            self._next = int(state.get("next", first))

    @property
    def owners(self) -> Mapping[str, int]:
        return dict(self._owners)

    def port_of(self, owner: str) -> int | None:
        return self._owners.get(owner)

    def allocate(self, owner: str) -> int:
        """The owner's port: the one it has, or a new free one."""
        if owner in self._owners:
            return self._owners[owner]
        taken = set(self._owners.values())
        size = self.last - self.first + 1
        start = self._next if self.first <= self._next <= self.last else self.first
        for offset in range(size):
            port = self.first + (start - self.first + offset) % size
            if port in taken or not self.is_free(port, self.host):
                continue
            self._owners[owner] = port
            self._next = port + 1 if port < self.last else self.first
            return port
        raise IstiolabError(
            f"no free port left in the sandbox's range {self.first}-{self.last} on {self.host}",
            fix="stop what listens on those ports, delete Deployments you no longer need, or "
            "give the sandbox a wider port range",
        )

    def claim(self, owner: str, port: int) -> None:
        """Record a port an owner already has (a pod restored from pods.json)."""
        self._owners[owner] = port

    def release(self, owner: str) -> None:
        self._owners.pop(owner, None)

    def snapshot(self) -> tuple[dict[str, int], int]:
        return dict(self._owners), self._next

    def restore(self, snapshot: tuple[dict[str, int], int]) -> None:
        self._owners, self._next = dict(snapshot[0]), snapshot[1]

    def save(self) -> None:
        if self._file is not None:
            write_json_atomically(
                self._file, {"format": STATE_FORMAT, "next": self._next, "owners": self._owners}
            )

    @staticmethod
    def is_free(port: int, host: str = HOST) -> bool:
        """Whether a server could listen on host:port now (bound the way servers bind)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return False
        return True


# --------------------------------------------------------------------------------------------
# Pods


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def template_hash(template: Mapping[str, Any]) -> str:
    """A pod template's pod-template-hash: FNV-32a encoded like Kubernetes' ComputeHash
    (rand.SafeEncodeString of the decimal number), zero-padded to ten characters."""
    digest = fnv32a(json.dumps(template, sort_keys=True, separators=(",", ":")).encode())
    return "".join(_NAME_ALPHABET[ord(c) % len(_NAME_ALPHABET)] for c in f"{digest:010d}")


def _random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class PodRecord:
    """A pod and what the registry remembers about it beyond model.Pod."""

    pod: Pod
    template_hash: str
    sequence: int  # creation order
    uid: str
    created: str
    image: str
    service: str
    version: str
    env: Mapping[str, str]
    injection: str  # the reason of the injection decision
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        pod = self.pod
        return {
            "name": pod.name,
            "namespace": pod.namespace,
            "deployment": pod.deployment,
            "labels": dict(pod.labels),
            "serviceAccount": pod.service_account,
            "appPort": pod.app_port,
            "containerPorts": dict(pod.container_ports),
            "sidecar": (
                {
                    "inbound": pod.sidecar.inbound_port,
                    "outbound": pod.sidecar.outbound_port,
                    "admin": pod.sidecar.admin_port,
                }
                if pod.sidecar
                else None
            ),
            "templateHash": self.template_hash,
            "sequence": self.sequence,
            "uid": self.uid,
            "created": self.created,
            "image": self.image,
            "service": self.service,
            "version": self.version,
            "env": dict(self.env),
            "injection": self.injection,
            "annotations": dict(self.annotations),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PodRecord:
        sidecar = data.get("sidecar")
        pod = Pod(
            name=data["name"],
            namespace=data["namespace"],
            deployment=data["deployment"],
            labels=dict(data["labels"]),
            service_account=data["serviceAccount"],
            app_port=int(data["appPort"]),
            container_ports={str(k): int(v) for k, v in data["containerPorts"].items()},
            sidecar=(
                SidecarPorts(
                    int(sidecar["inbound"]), int(sidecar["outbound"]), int(sidecar["admin"])
                )
                if sidecar
                else None
            ),
        )
        return cls(
            pod=pod,
            template_hash=data["templateHash"],
            sequence=int(data["sequence"]),
            uid=data["uid"],
            created=data["created"],
            image=data["image"],
            service=data["service"],
            version=data["version"],
            env=dict(data["env"]),
            injection=data["injection"],
            annotations=dict(data.get("annotations") or {}),
        )


@dataclass
class ReconcileResult:
    """What one reconcile changed; `problems` are Deployments whose pods could not be created."""

    created: list[Pod] = field(default_factory=list)
    deleted: list[Pod] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.deleted)


def _port_owner(pod: Pod | tuple[str, str], role: str) -> str:
    namespace, name = (pod.namespace, pod.name) if isinstance(pod, Pod) else pod
    return f"{namespace}/{name}/{role}"


_ROLES = ("app", "inbound", "outbound", "admin")


class Registry:
    """The pods of the sandbox and the services that select them."""

    def __init__(
        self,
        state_dir: str | Path | None = None,
        *,
        port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
        ports: PortAllocator | None = None,
    ) -> None:
        """The registry kept in `state_dir` (its pods and ports loaded if there), or in memory."""
        self._lock = threading.RLock()
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self.ports = ports or PortAllocator(*port_range, state_dir=self._state_dir)
        self._records: dict[tuple[str, str], PodRecord] = {}
        self._sequence = 0
        file = self._state_dir / PODS_FILE if self._state_dir else None
        state = read_state_json(file, STATE_FORMAT) if file else None
        if state is not None:
            try:
                for entry in state["pods"]:
                    record = PodRecord.from_json(entry)
                    self._records[(record.pod.namespace, record.pod.name)] = record
                self._sequence = int(state["sequence"])
            except (KeyError, TypeError, ValueError) as exc:
                raise IstiolabError(
                    f"cannot read the sandbox state {file}: an entry is incomplete ({exc!r})",
                    fix=f"delete {file} and {self._state_dir / PORTS_FILE}; the sandbox then "
                    "creates the pods anew",
                ) from exc
        # pods.json is the truth: a crash between writing ports.json and pods.json (or a lost
        # ports.json) must neither keep the ports of pods that are gone nor hand out theirs.
        for owner in list(self.ports.owners):
            namespace, _, rest = owner.partition("/")
            if (namespace, rest.rpartition("/")[0]) not in self._records:
                self.ports.release(owner)
        for record in self._records.values():
            pod = record.pod
            ports = {"app": pod.app_port}
            if pod.sidecar is not None:
                ports.update(
                    inbound=pod.sidecar.inbound_port,
                    outbound=pod.sidecar.outbound_port,
                    admin=pod.sidecar.admin_port,
                )
            for role, port in ports.items():
                self.ports.claim(_port_owner(pod, role), port)

    @classmethod
    def load(
        cls, state_dir: str | Path, *, port_range: tuple[int, int] = DEFAULT_PORT_RANGE
    ) -> Registry:
        return cls(state_dir, port_range=port_range)

    # ---------------------------------------------------------------- reading

    @property
    def pods(self) -> tuple[Pod, ...]:
        """Every pod, by namespace, Deployment and creation order."""
        with self._lock:
            return tuple(r.pod for r in self._sorted_records())

    def records(self) -> tuple[PodRecord, ...]:
        with self._lock:
            return tuple(self._sorted_records())

    def pods_in(self, namespace: str | None = None, deployment: str | None = None) -> list[Pod]:
        return [
            pod
            for pod in self.pods
            if (namespace is None or pod.namespace == namespace)
            and (deployment is None or pod.deployment == deployment)
        ]

    def record(self, namespace: str, name: str) -> PodRecord:
        with self._lock:
            record = self._records.get((namespace, name))
        if record is None:
            raise NotFoundError(
                f'Error from server (NotFound): pods "{name}" not found',
                fix=f"list the pods: istiolab get pods -n {namespace}",
            )
        return record

    def get_pod(self, namespace: str, name: str) -> Pod:
        return self.record(namespace, name).pod

    def launch(self, pod: Pod) -> AppLaunch:
        """How to start the pod's app."""
        record = self.record(pod.namespace, pod.name)
        return AppLaunch(
            pod=pod.name,
            namespace=pod.namespace,
            service=record.service,
            version=record.version,
            image=record.image,
            app_port=pod.app_port,
            env=dict(record.env),
        )

    @staticmethod
    def services(store: Store) -> tuple[Service, ...]:
        """The Services of the store, as the model has them."""
        services = []
        for obj in store.get("services"):
            ports = []
            for port in _list(obj.spec.get("ports")):
                port = _dict(port)
                if not isinstance(port.get("port"), int):
                    continue
                target = port.get("targetPort")
                ports.append(
                    ServicePort(
                        port=port["port"],
                        name=str(port.get("name", "")),
                        target_port=target if isinstance(target, int | str) else None,
                        app_protocol=str(port.get("appProtocol", "")),
                    )
                )
            selector = _dict(obj.spec.get("selector"))
            services.append(
                Service(
                    name=obj.name,
                    namespace=obj.namespace,
                    ports=tuple(ports),
                    selector={str(k): str(v) for k, v in selector.items()},
                    labels={str(k): str(v) for k, v in obj.labels.items()},
                )
            )
        return tuple(services)

    def mesh(self, store: Store, gateway: Gateway | None = None) -> Mesh:
        """Everything the translator needs, from the store and the running pods.

        Istio kinds are keyed by kind ("VirtualService"); the Gateway API's by kind and group
        ("Gateway.gateway.networking.k8s.io"), as its Gateway shares its kind with Istio's. Each
        object is its manifest: metadata has creationTimestamp, which orders rules as Istio does.
        """
        istio: dict[str, list[Mapping[str, Any]]] = {}
        for obj in store.objects():
            if obj.group.endswith(".istio.io"):
                istio.setdefault(obj.kind, []).append(obj.manifest())
            elif obj.group == "gateway.networking.k8s.io":
                istio.setdefault(f"{obj.kind}.{obj.group}", []).append(obj.manifest())
        return Mesh(
            services=self.services(store),
            pods=self.pods,
            gateway=gateway or Gateway(),
            istio={kind: tuple(objects) for kind, objects in istio.items()},
        )

    def pod_manifest(self, pod: Pod) -> dict[str, Any]:
        """The pod as `kubectl get pod -o yaml` would show its main fields."""
        record = self.record(pod.namespace, pod.name)
        annotations = dict(record.annotations)
        containers: list[dict[str, Any]] = [
            {
                "name": record.service,
                "image": record.image,
                "ports": [
                    {"containerPort": port, **({"name": name} if not name.isdigit() else {})}
                    for name, port in pod.container_ports.items()
                ],
                "env": [{"name": k, "value": v} for k, v in record.env.items()],
            }
        ]
        if pod.sidecar is not None:
            annotations["sidecar.istio.io/status"] = json.dumps(
                {"containers": ["istio-proxy"], "revision": DEFAULT_REVISION}
            )
            containers.append(
                {"name": "istio-proxy", "image": "envoy (the sandbox's sidecar)", "ports": []}
            )
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": pod.namespace,
                "uid": record.uid,
                "creationTimestamp": record.created,
                "labels": dict(pod.labels),
                **({"annotations": annotations} if annotations else {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{pod.deployment}-{record.template_hash}",
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "serviceAccountName": pod.service_account,
                "nodeName": NODE_NAME,
                "containers": containers,
            },
            "status": {"hostIP": HOST, "podIP": HOST},
        }

    # ---------------------------------------------------------------- reconciling

    def delete_pod(self, namespace: str, name: str) -> str:
        """`kubectl delete pod NAME`: the pod goes; the next reconcile creates a replacement, as
        its ReplicaSet would. Returns kubectl's line."""
        with self._lock:
            record = self.record(namespace, name)
            self._delete(record, ReconcileResult())
            self._save()
        return f'pod "{name}" deleted'

    def reconcile(self, store: Store) -> ReconcileResult:
        """Bring the pods in line with the store's Deployments (see the module docstring)."""
        with self._lock:
            snapshot = (dict(self._records), self._sequence, self.ports.snapshot())
            try:
                result = self._reconcile(store)
                if result.changed:
                    self._save()
            except BaseException:
                self._records, self._sequence = snapshot[0], snapshot[1]
                self.ports.restore(snapshot[2])
                raise
            return result

    def _reconcile(self, store: Store) -> ReconcileResult:
        result = ReconcileResult()
        namespaces = {obj.name: obj for obj in store.get("namespaces")}
        accounts = {(obj.namespace, obj.name) for obj in store.get("serviceaccounts")}
        wanted: set[tuple[str, str]] = set()
        for deployment in store.get("deployments"):
            key = (deployment.namespace, deployment.name)
            wanted.add(key)
            template = _dict(deployment.spec.get("template"))
            current_hash = template_hash(template)
            replicas = deployment.spec.get("replicas", 1)
            replicas = replicas if isinstance(replicas, int) and replicas >= 0 else 1
            mine = [r for r in self._sorted_records() if (r.pod.namespace, r.pod.deployment) == key]
            keep = [r for r in mine if r.template_hash == current_hash][:replicas]
            for record in mine:
                if record not in keep:
                    self._delete(record, result)
            missing = replicas - len(keep)
            if missing <= 0:
                continue
            _, pod_spec = _pod_template(deployment.data)
            account = _service_account(pod_spec)
            if account != "default" and (deployment.namespace, account) not in accounts:
                result.problems.append(
                    f"deployment {deployment.namespace}/{deployment.name}: no pods created: "
                    f'serviceaccount "{account}" not found'
                )
                continue
            namespace = namespaces.get(deployment.namespace)
            for _ in range(missing):
                try:
                    record = self._create(deployment, template, current_hash, namespace)
                except ImageError as exc:
                    result.problems.append(
                        f"deployment {deployment.namespace}/{deployment.name}: no pods created: "
                        f"{exc}"
                    )
                    break
                result.created.append(record.pod)
        for record in self._sorted_records():
            if (record.pod.namespace, record.pod.deployment) not in wanted:
                self._delete(record, result)
        return result

    def _delete(self, record: PodRecord, result: ReconcileResult) -> None:
        del self._records[(record.pod.namespace, record.pod.name)]
        for role in _ROLES:
            self.ports.release(_port_owner(record.pod, role))
        result.deleted.append(record.pod)

    def _create(
        self,
        deployment: StoredObject,
        template: Mapping[str, Any],
        hash_: str,
        namespace: StoredObject | None,
    ) -> PodRecord:
        metadata, pod_spec = _pod_template(deployment.data)
        container = (
            _dict(_list(pod_spec.get("containers"))[0]) if pod_spec.get("containers") else {}
        )
        image = parse_image(str(container.get("image", "")))
        ns = deployment.namespace
        while True:
            name = f"{deployment.name}-{hash_}-{_random_suffix()}"
            if (ns, name) not in self._records:
                break
        labels = {str(k): str(v) for k, v in _dict(metadata.get("labels")).items()}
        labels[POD_TEMPLATE_HASH] = hash_
        annotations = {str(k): str(v) for k, v in _dict(metadata.get("annotations")).items()}
        decision = injection_decision(
            ns,
            namespace.labels if namespace is not None else {},
            labels,
            annotations,
            host_network=pod_spec.get("hostNetwork") is True,
        )
        if decision.injected:
            labels.update(injected_labels(labels, deployment.name))
        container_ports: dict[str, int] = {}
        for port in _list(container.get("ports")):
            port = _dict(port)
            number = port.get("containerPort")
            if isinstance(number, int):
                container_ports[str(port.get("name") or number)] = number
        account = _service_account(pod_spec)
        uid = str(uuid.uuid4())
        fields = {
            "metadata.name": name,
            "metadata.namespace": ns,
            "metadata.uid": uid,
            "spec.serviceAccountName": account,
            "spec.nodeName": NODE_NAME,
            "status.podIP": HOST,
            "status.podIPs": HOST,
            "status.hostIP": HOST,
            "status.hostIPs": HOST,
        }
        env = {
            **image.variant.env,
            "HOSTNAME": name,
            **container_env(_list(container.get("env")), fields, labels, annotations),
        }
        app_port = self.ports.allocate(_port_owner((ns, name), "app"))
        sidecar = None
        if decision.injected:
            sidecar = SidecarPorts(
                inbound_port=self.ports.allocate(_port_owner((ns, name), "inbound")),
                outbound_port=self.ports.allocate(_port_owner((ns, name), "outbound")),
                admin_port=self.ports.allocate(_port_owner((ns, name), "admin")),
            )
        self._sequence += 1
        record = PodRecord(
            pod=Pod(
                name=name,
                namespace=ns,
                deployment=deployment.name,
                labels=labels,
                service_account=account,
                app_port=app_port,
                container_ports=container_ports,
                sidecar=sidecar,
            ),
            template_hash=hash_,
            sequence=self._sequence,
            uid=uid,
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            image=image.image,
            service=image.service,
            version=image.version,
            env=env,
            injection=decision.reason,
            annotations=annotations,
        )
        self._records[(ns, name)] = record
        return record

    def _sorted_records(self) -> list[PodRecord]:
        return sorted(
            self._records.values(),
            key=lambda r: (r.pod.namespace, r.pod.deployment, r.sequence),
        )

    def _save(self) -> None:
        if self._state_dir is None:
            return
        try:
            self.ports.save()
            write_json_atomically(
                self._state_dir / PODS_FILE,
                {
                    "format": STATE_FORMAT,
                    "sequence": self._sequence,
                    "pods": [r.to_json() for r in self._sorted_records()],
                },
            )
        except OSError as exc:
            raise IstiolabError(
                f"cannot write the sandbox state to {self._state_dir}: {exc.strerror or exc}",
                fix="check that the disk is not full and the state directory is writable",
            ) from exc
