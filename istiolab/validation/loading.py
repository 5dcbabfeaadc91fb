"""Reading Kubernetes YAML: files, directories and kustomizations, into located documents.

Every document keeps where it came from (file, position in the file, the line of every field),
so that a finding can point at `labs/03/vs.yaml:12`. YAML is read the way Kubernetes reads it
(sigs.k8s.io/yaml): a YAML 1.1 mapping that becomes JSON, where an unquoted date stays a string.

A directory is read recursively (*.yaml, *.yml), unless it is a kustomization (it holds a
kustomization.yaml): then `kubectl kustomize DIR` builds it and the output is what is validated,
like `kubectl apply -k DIR` would apply it. Files that are not API resources (a kustomization, a
kind cluster config, an IstioOperator for istioctl) are set aside with the reason, and so are the
patch files a kustomization lists, which are partial resources by design.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import IstiolabError
from .findings import (
    KUSTOMIZE_BUILD_FAILED,
    SCHEMA_VALIDATION_ERROR,
    YAML_SYNTAX_ERROR,
    Finding,
)

YAML_SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZE_TIMEOUT_SECONDS = 60

# A field path: mapping keys and list indexes, from the document root.
FieldPath = tuple[str | int, ...]

# Kinds that live outside namespaces (the ones a course manifest may plausibly hold).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "GatewayClass",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
    }
)

# apiVersion groups of files that are read by a tool, not sent to the API server.
NOT_API_RESOURCES = {
    "kind.x-k8s.io": "a kind cluster configuration, read by `kind create cluster --config`",
    "install.istio.io": "an Istio install configuration, read by `istioctl install -f`",
    "kustomize.config.k8s.io": "a kustomization, read by `kubectl kustomize` (kubectl apply -k)",
}


def format_path(path: Iterable[str | int]) -> str:
    """spec.http[0].route[0].destination, the way kubectl names a field."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Document:
    """One YAML document: its data and where it was read from."""

    data: Any
    file: str
    index: int = 0
    line: int = 1
    lines: Mapping[FieldPath, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def api_version(self) -> str:
        value = self.data.get("apiVersion") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else ""

    @property
    def kind(self) -> str:
        value = self.data.get("kind") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def metadata(self) -> dict[str, Any]:
        value = self.data.get("metadata") if isinstance(self.data, dict) else None
        return value if isinstance(value, dict) else {}

    @property
    def spec(self) -> dict[str, Any]:
        value = self.data.get("spec") if isinstance(self.data, dict) else None
        return value if isinstance(value, dict) else {}

    @property
    def name(self) -> str:
        value = self.metadata.get("name")
        return value if isinstance(value, str) else ""

    @property
    def namespace(self) -> str:
        """The namespace the resource lands in: `kubectl apply` without -n puts it in default."""
        if self.kind in CLUSTER_SCOPED_KINDS:
            return ""
        value = self.metadata.get("namespace")
        return value if isinstance(value, str) and value else "default"

    @property
    def ref(self) -> str:
        """`VirtualService default/reviews`, as istioctl analyze names a resource."""
        if not self.kind:
            return ""
        name = self.name or "<no name>"
        return f"{self.kind} {self.namespace}/{name}" if self.namespace else f"{self.kind} {name}"

    def line_of(self, path: Sequence[str | int] = ()) -> int:
        """The line of a field, or of its nearest parent that the file has."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.line

    def finding(self, code: str, message: str, *, path: Sequence[str | int] = (), **kwargs: Any):
        """A finding located at a field of this document."""
        return Finding.of(
            code,
            message,
            file=self.file,
            line=self.line_of(path),
            document=self.index,
            resource=self.ref,
            path=format_path(path),
            **kwargs,
        )


@dataclass(frozen=True)
class Skipped:
    """A file or document that is not an API resource, and why it was not validated."""

    where: str
    reason: str
    document: Document | None = None


@dataclass
class Loaded:
    documents: list[Document] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, other: Loaded) -> None:
        self.documents.extend(other.documents)
        self.findings.extend(other.findings)
        self.skipped.extend(other.skipped)


class _KubernetesYamlLoader(yaml.SafeLoader):
    """SafeLoader without timestamps: Kubernetes keeps `2024-01-01` as the string it is."""


_KubernetesYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _walk_nodes(
    node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], duplicates: list[FieldPath]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            child = (*path, key)
            if key in seen and key != "<<":
                duplicates.append(child)
            seen.add(key)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _walk_nodes(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines.setdefault(child, item.start_mark.line + 1)
            _walk_nodes(item, child, lines, duplicates)


def load_text(text: str, file: str) -> Loaded:
    """Every document of one YAML stream, with its lines; a syntax error becomes a finding."""
    loaded = Loaded()
    loader = _KubernetesYamlLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            lines: dict[FieldPath, int] = {}
            duplicates: list[FieldPath] = []
            _walk_nodes(node, (), lines, duplicates)
            if data is not None:
                document = Document(data, file, index, node.start_mark.line + 1, lines)
                loaded.findings.extend(
                    document.finding(
                        SCHEMA_VALIDATION_ERROR,
                        f'Schema validation error: duplicate field "{format_path(path)}"',
                        path=path,
                        fix="Keep one of the two entries: YAML would silently drop the first, "
                        "and kubectl --validate=strict rejects the document.",
                    )
                    for path in duplicates
                )
                _add_document(loaded, document)
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        loaded.findings.append(
            Finding.of(
                YAML_SYNTAX_ERROR,
                f"YAML syntax error: {problem}",
                fix="Fix the YAML at that line and column: check the indentation (spaces, never "
                "tabs), the `key: value` colons, and quotes around values that contain `: ` or "
                "start with `*`, `&`, `!`, `{` or `[`.",
                file=file,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
                document=index,
            )
        )
    except yaml.YAMLError as exc:  # a reader error: a character YAML does not allow
        loaded.findings.append(
            Finding.of(
                YAML_SYNTAX_ERROR,
                f"YAML syntax error: {exc}",
                fix="Remove the character the message names (or save the file as UTF-8 text).",
                file=file,
                document=index,
            )
        )
    finally:
        loader.dispose()
    return loaded


def _add_document(loaded: Loaded, document: Document) -> None:
    """Sort one document: a resource, a List of resources, something else, or not a resource."""
    data = document.data
    if not isinstance(data, dict):
        loaded.findings.append(
            Finding.of(
                SCHEMA_VALIDATION_ERROR,
                "Schema validation error: the document is a "
                f"{type(data).__name__}, not a mapping with apiVersion, kind and metadata",
                fix="A Kubernetes resource is a YAML mapping: start the document with "
                "`apiVersion:` and `kind:` lines at the left margin.",
                file=document.file,
                line=document.line,
                document=document.index,
            )
        )
        return
    if document.api_version == "v1" and document.kind == "List":
        items = data.get("items")
        for i, item in enumerate(items if isinstance(items, list) else []):
            prefix = ("items", i)
            lines = {p[2:]: n for p, n in document.lines.items() if p[:2] == prefix}
            item_line = document.lines.get(prefix, document.line)
            _add_document(loaded, Document(item, document.file, document.index, item_line, lines))
        return
    reason = NOT_API_RESOURCES.get(document.group)
    if reason:
        where = f"{document.file} ({document.api_version} {document.kind})"
        loaded.skipped.append(Skipped(where, f"{reason}; not an API resource", document))
        return
    loaded.documents.append(document)


def _read(path: Path, shown: str) -> Loaded:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return Loaded(
            findings=[
                Finding.of(
                    YAML_SYNTAX_ERROR,
                    f"YAML syntax error: the file is not UTF-8 text ({exc.reason})",
                    fix="Save the file as UTF-8 text.",
                    file=shown,
                )
            ]
        )
    except OSError as exc:
        raise IstiolabError(
            f"cannot read {shown}: {exc.strerror or exc}",
            fix="check the file's permissions, or leave it out",
        ) from exc
    return load_text(text, shown)


def is_kustomization_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def build_kustomization(path: Path, shown: str) -> Loaded:
    """`kubectl kustomize DIR`, read like a file (lines are lines of the built output)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise IstiolabError(
            f"{shown} is a kustomization, and building it needs `kubectl kustomize`, "
            "but kubectl is not on PATH",
            fix="install kubectl (https://kubernetes.io/docs/tasks/tools/), or give the YAML "
            "files in the directory instead of the directory itself",
        )
    try:
        result = subprocess.run(
            [kubectl, "kustomize", str(path)],
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise IstiolabError(
            f"`kubectl kustomize {shown}` did not finish in {KUSTOMIZE_TIMEOUT_SECONDS} s",
            fix="check that the kustomization does not point at remote resources",
        ) from exc
    label = f"{shown} (kubectl kustomize)"
    if result.returncode != 0:
        detail = _kubectl_error(result.stderr)
        return Loaded(
            findings=[
                Finding.of(
                    KUSTOMIZE_BUILD_FAILED,
                    f"kubectl kustomize failed: {detail}",
                    fix=f"Run `kubectl kustomize {shown}` and fix the file it names: usually a "
                    "path under resources:, components: or patches: that does not exist.",
                    file=label,
                )
            ]
        )
    return load_text(result.stdout, label)


def _kubectl_error(stderr: str) -> str:
    """kubectl's message without its log prefix (E1125 12:00:00 ... err="...")."""
    text = stderr.strip()
    match = re.search(r'err="(.*)"\s*$', text, re.DOTALL)
    if match:
        text = match.group(1).replace('\\"', '"')
    return text.removeprefix("error: ").strip() or "no output"


def _kustomize_patch_files(directory: Path) -> frozenset[Path]:
    """The patch files a kustomization in `directory` lists (partial resources by design)."""
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            break
    else:
        return frozenset()
    try:
        data = yaml.load(candidate.read_text(encoding="utf-8"), Loader=_KubernetesYamlLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return frozenset()
    if not isinstance(data, dict):
        return frozenset()
    paths: list[str] = []
    for key in ("patches", "patchesJson6902"):
        for patch in data.get(key) or []:
            if isinstance(patch, dict) and isinstance(patch.get("path"), str):
                paths.append(patch["path"])
    for patch in data.get("patchesStrategicMerge") or []:
        if isinstance(patch, str) and "\n" not in patch:
            paths.append(patch)
    return frozenset((directory / p).resolve() for p in paths)


class _PatchIndex:
    """Which files kustomizations list as patches; read once per load, never kept longer."""

    def __init__(self) -> None:
        self._by_directory: dict[Path, frozenset[Path]] = {}

    def owner(self, path: Path) -> Path | None:
        """The directory whose kustomization lists `path` as a patch, if any does."""
        resolved = path.resolve()
        for directory in resolved.parents:
            if directory not in self._by_directory:
                self._by_directory[directory] = _kustomize_patch_files(directory)
            if resolved in self._by_directory[directory]:
                return directory
            if (directory / ".git").exists():
                break
        return None


def _yaml_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix in YAML_SUFFIXES:
            yield path


def _load_file(path: Path, shown: str, patches: _PatchIndex) -> Loaded:
    owner = patches.owner(path)
    if owner is not None:
        reason = (
            f"a kustomize patch listed by {owner.name}/kustomization.yaml (a partial resource); "
            "validate the kustomization directory to check the patched result"
        )
        return Loaded(skipped=[Skipped(shown, reason)])
    return _read(path, shown)


def load_paths(paths: Iterable[str | Path], *, kustomize: bool | None = True) -> Loaded:
    """Read files and directories; a missing path is an IstiolabError with the fix.

    `kustomize`: build kustomization directories with kubectl (True), read their files as they
    are (False), or build them only when kubectl is on PATH (None: for context, where image
    tags and the like do not matter).
    """
    loaded = Loaded()
    patches = _PatchIndex()
    if kustomize is None:
        kustomize = shutil.which("kubectl") is not None
    for given in paths:
        path = Path(given)
        shown = str(given)
        if not path.exists():
            raise IstiolabError(
                f"{shown}: no such file or directory",
                fix="check the path (it is relative to the directory you run istiolab in)",
            )
        if kustomize and is_kustomization_dir(path):
            loaded.add(build_kustomization(path, shown))
        elif path.is_dir():
            files = list(_yaml_files(path))
            if not files:
                raise IstiolabError(
                    f"{shown}: no *.yaml or *.yml files in this directory",
                    fix="give the YAML files to validate, or the directory that holds them",
                )
            for file in files:
                loaded.add(_load_file(file, str(Path(shown) / file.relative_to(path)), patches))
        else:
            loaded.add(_load_file(path, shown, patches))
    return loaded
