"""Schema validation of one resource, strict like `kubectl apply --validate=strict`.

Three sources of schemas, each checked with `jsonschema` (Draft 2020-12):

- Kubernetes kinds: the strict schemas `kubernetes-validate` ships for Kubernetes
  KUBERNETES_VERSION (the kind node image's minor version), unknown fields rejected.
- Istio kinds: generated from `cloudcoil-models-istio`, pydantic models generated from Istio's
  own CRD schemas. The models accept and ignore unknown fields, so the JSON Schema made from
  them is closed here: every object that lists its properties gets additionalProperties: false
  (maps and Istio's free-form Struct fields list none and stay open), and the "exactly one of
  exact/prefix/regex" structures the CRDs express with oneOf, which the models flatten into
  variant classes, are put back as oneOf. Nulls are dropped first, as the API server prunes
  them from custom resources.
- Gateway API kinds: gateway_api.py.

`metadata` is checked against Kubernetes' own strict ObjectMeta for every kind.

Building an Istio schema imports the pydantic models (about two seconds), so each one built is
kept in a cache directory ($ISTIOLAB_CACHE_DIR, else $XDG_CACHE_HOME/istiolab, else
~/.cache/istiolab), keyed by the cloudcoil-models-istio version: a later `istiolab validate`
reads the JSON instead.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Iterator
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from ..errors import IstiolabError
from . import gateway_api
from .findings import SCHEMA_VALIDATION_ERROR, UNKNOWN_KIND, Finding
from .loading import Document, format_path

# The Kubernetes minor the course's kind node runs (versions.env KIND_NODE_IMAGE).
KUBERNETES_VERSION = "1.36"
MAX_FINDINGS_PER_DOCUMENT = 20

_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = {"$ref": f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
_EXCLUSIVE = "x-istiolab-exclusive"  # marks a oneOf that means "at most one of these keys"
# Bump when the way Istio schemas are made strict changes: cached schemas are then rebuilt.
_ISTIO_SCHEMA_FORMAT = 2
_ISTIO_MODELS_DISTRIBUTION = "cloudcoil-models-istio"

Schema = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Kubernetes (kubernetes-validate's strict schemas)


def _kubernetes_schema_dir() -> Any:
    return resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{KUBERNETES_VERSION}.0-local-strict"
    )


@functools.cache
def _registry() -> referencing.Registry:
    definitions = json.loads(_kubernetes_schema_dir().joinpath("_definitions.json").read_text())
    resource = referencing.Resource.from_contents(
        definitions, default_specification=referencing.jsonschema.DRAFT202012
    )
    return referencing.Registry().with_resource(_DEFINITIONS_ID, resource)


def _kubernetes_schema(api_version: str, kind: str) -> Schema | None:
    # kubernetes-validate names its files kind-group-version.json, with the group cut at its
    # first dot (apps/v1 -> apps-v1, networking.k8s.io/v1 -> networking-v1, v1 -> v1).
    suffix = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    file = _kubernetes_schema_dir().joinpath(f"{kind.lower()}-{suffix}.json")
    if not file.is_file():
        return None
    schema = json.loads(file.read_text())
    served = schema.get("properties", {}).get("apiVersion", {}).get("enum", [])
    return schema if api_version in served else None


# --------------------------------------------------------------------------------------------
# Istio (cloudcoil-models-istio, closed)


def _istio_module(api_version: str) -> Any | None:
    group, _, version = api_version.partition("/")
    if not group.endswith(".istio.io") or not re.fullmatch(r"v\d+(alpha\d+|beta\d+)?", version):
        return None
    package = group.removesuffix(".istio.io")
    if not re.fullmatch(r"[a-z]+", package):
        return None
    if importlib.util.find_spec("cloudcoil.models.istio") is None:
        raise IstiolabError(
            f"checking {api_version} resources needs the Istio schemas of the "
            f"{_ISTIO_MODELS_DISTRIBUTION} package, which is not installed",
            fix="install istiolab with its dependencies: pip install -e . (in the repository)",
        )
    try:
        return importlib.import_module(f"cloudcoil.models.istio.{package}.{version}")
    except ModuleNotFoundError:
        return None


def _istio_kinds(api_version: str) -> dict[str, type]:
    module = _istio_module(api_version)
    if module is None:
        return {}
    from cloudcoil.resources import Resource

    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, Resource)
        and value.__module__ == module.__name__
        and "spec" in getattr(value, "model_fields", {})
    }


def _drop_nulls(node: Any, *, names: bool = False) -> Any:
    """anyOf [X, null] -> X: the API server prunes nulls, the data is cleaned the same way.

    Also drops pydantic's title and default annotations (not in maps of names: `names`).
    """
    if isinstance(node, dict) and names:
        return {k: _drop_nulls(v) for k, v in node.items()}
    if isinstance(node, dict):
        node = {
            k: _drop_nulls(v, names=k in ("properties", "$defs"))
            for k, v in node.items()
            if k not in ("title", "default")
        }
        options = node.get("anyOf")
        if isinstance(options, list):
            kept = [o for o in options if o != {"type": "null"}]
            if len(kept) == 1:
                del node["anyOf"]
                node = {**kept[0], **node}
            else:
                node["anyOf"] = kept
        return node
    if isinstance(node, list):
        return [_drop_nulls(v) for v in node]
    return node


def _restore_exclusive(node: Any, defs: Schema) -> Any:
    """Variant classes (all optional | exact required | prefix required ...) -> one oneOf."""
    if isinstance(node, list):
        return [_restore_exclusive(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _restore_exclusive(v, defs) for k, v in node.items()}
    options = node.get("anyOf")
    if not (isinstance(options, list) and len(options) >= 2):
        return node
    names = [o.get("$ref", "").rpartition("/")[2] for o in options if isinstance(o, dict)]
    variants = [defs.get(name) for name in names]
    shapes = [v for v in variants if isinstance(v, dict) and "properties" in v]
    if len(shapes) != len(options) or len({frozenset(v["properties"]) for v in shapes}) != 1:
        return node
    base = [n for n, v in zip(names, shapes, strict=True) if not v.get("required")]
    keys = sorted({key for v in shapes for key in v.get("required", [])})
    if len(base) != 1 or len(keys) != len(shapes) - 1:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {
        **rest,
        "$ref": f"#/$defs/{base[0]}",
        "oneOf": [
            {"not": {"anyOf": [{"required": [k]} for k in keys]}},
            *({"required": [k]} for k in keys),
        ],
        _EXCLUSIVE: keys,
    }


def _close_objects(node: Any, *, names: bool = False) -> None:
    """additionalProperties: false wherever an object lists its properties (`names`: a map of
    property or definition names, not a schema)."""
    if isinstance(node, dict):
        if not names and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for key, value in node.items():
            _close_objects(value, names=not names and key in ("properties", "$defs"))
    elif isinstance(node, list):
        for value in node:
            _close_objects(value)


def _istio_spec_schema(model: type) -> tuple[Schema, Schema, bool]:
    """(spec schema, $defs, spec required) for one cloudcoil Istio model."""
    raw = _drop_nulls(model.model_json_schema(by_alias=True))
    defs = raw.get("$defs", {})
    defs = {name: _restore_exclusive(d, defs) for name, d in defs.items()}
    spec = _restore_exclusive(raw["properties"]["spec"], defs)
    _close_objects(defs, names=True)
    _close_objects(spec)
    return spec, defs, "spec" in raw.get("required", [])


def _cache_dir() -> Path | None:
    """Where built Istio schemas are kept, per models version; None if it cannot be known."""
    try:
        version = metadata.version(_ISTIO_MODELS_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    root = os.environ.get("ISTIOLAB_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "istiolab")
    return Path(root) / f"istio-schemas-{version}-{_ISTIO_SCHEMA_FORMAT}"


def _cached(name: str, build: Any) -> Any:
    """`build()`, kept as JSON in the cache directory (skipped if it cannot be written)."""
    directory = _cache_dir()
    file = directory / name if directory else None
    if file is not None and file.is_file():
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    value = build()
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=file.parent, suffix=".tmp", delete=False, encoding="utf-8"
            ) as out:
                json.dump(value, out)
            Path(out.name).replace(file)
        except OSError:
            pass
    return value


def _istio_schema(api_version: str, kind: str) -> Schema | None:
    """The whole strict schema of an Istio kind, from the cache or built from the models."""
    slug = api_version.replace("/", "_")
    kinds = _cached(f"{slug}.kinds.json", lambda: sorted(_istio_kinds(api_version)))
    if kind not in kinds:
        return None

    def build() -> Schema:
        spec, defs, required = _istio_spec_schema(_istio_kinds(api_version)[kind])
        return _resource_schema(api_version, kind, spec, defs, required)

    return _cached(f"{slug}.{kind}.json", build)


# --------------------------------------------------------------------------------------------
# One validator per apiVersion and kind


def _resource_schema(
    api_version: str, kind: str, spec: Schema, defs: Schema, spec_required: bool
) -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "enum": [api_version]},
            "kind": {"type": "string", "enum": [kind]},
            "metadata": _OBJECT_META,
            "spec": spec,
            "status": {},
        },
        "required": ["apiVersion", "kind", "metadata"] + (["spec"] if spec_required else []),
        "additionalProperties": False,
        "$defs": defs,
    }


class KindSchema:
    """The validator of one kind, and whether nulls are pruned before it runs (custom kinds)."""

    def __init__(self, schema: Schema, *, prune_nulls: bool, source: str) -> None:
        self.validator = jsonschema.Draft202012Validator(schema, registry=_registry())
        self.prune_nulls = prune_nulls
        self.source = source

    def errors(self, data: Any) -> Iterator[jsonschema.ValidationError]:
        if self.prune_nulls:
            data = _without_nulls(data)
        return self.validator.iter_errors(data)


@functools.cache
def schema_for(api_version: str, kind: str) -> KindSchema | None:
    """The strict schema of a kind, or None when it is not a kind this project knows."""
    group, _, version = api_version.rpartition("/")
    if group.endswith(".istio.io"):
        istio = _istio_schema(api_version, kind)
        if istio is None:
            return None
        return KindSchema(istio, prune_nulls=True, source="Istio CRD")
    if group == gateway_api.GROUP:
        found = gateway_api.spec_schema(version, kind)
        if found is None:
            return None
        spec, required = found
        schema = _resource_schema(api_version, kind, copy.deepcopy(spec), {}, required)
        return KindSchema(schema, prune_nulls=True, source="Gateway API")
    kubernetes = _kubernetes_schema(api_version, kind)
    if kubernetes is None:
        return None
    return KindSchema(kubernetes, prune_nulls=False, source=f"Kubernetes {KUBERNETES_VERSION}")


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_without_nulls(v) for v in data]
    return data


# --------------------------------------------------------------------------------------------
# Errors -> findings

_ISTIO_KINDS = {
    "networking.istio.io/v1": (
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "Sidecar",
        "WorkloadEntry",
        "WorkloadGroup",
    ),
    "security.istio.io/v1": ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"),
    "telemetry.istio.io/v1": ("Telemetry",),
}
_COMMON_KUBERNETES = {
    "v1": ("ConfigMap", "Namespace", "Pod", "Secret", "Service", "ServiceAccount"),
    "apps/v1": ("DaemonSet", "Deployment", "StatefulSet"),
    "networking.k8s.io/v1": ("Ingress", "NetworkPolicy"),
}


def _known_kinds() -> dict[str, tuple[str, ...]]:
    gateway = {f"{gateway_api.GROUP}/v1": ("Gateway", "GatewayClass", "GRPCRoute", "HTTPRoute")}
    return {**_COMMON_KUBERNETES, **_ISTIO_KINDS, **gateway}


def _unknown_kind(document: Document) -> Finding:
    api_version, kind = document.api_version, document.kind
    known = _known_kinds()
    served_as = [v for v, kinds in known.items() if kind in kinds]
    if served_as:
        fix = f"{kind} is served as `apiVersion: {served_as[0]}`."
    else:
        all_kinds = sorted({k for kinds in known.values() for k in kinds})
        close = difflib.get_close_matches(kind, all_kinds, n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        fix = (
            f"Check the spelling of apiVersion and kind.{hint} This course uses Kubernetes "
            f"{KUBERNETES_VERSION} kinds (e.g. apps/v1 Deployment), Istio kinds "
            "(networking.istio.io/v1 VirtualService, DestinationRule, Gateway, ...; "
            "security.istio.io/v1 AuthorizationPolicy, PeerAuthentication, ...; "
            "telemetry.istio.io/v1 Telemetry) and Gateway API kinds "
            "(gateway.networking.k8s.io/v1 Gateway, HTTPRoute)."
        )
    return document.finding(
        UNKNOWN_KIND,
        f'No schema for apiVersion "{api_version}" kind "{kind}": not a Kubernetes '
        f"{KUBERNETES_VERSION}, Istio or Gateway API kind",
        path=("kind",),
        fix=fix,
    )


def _value(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_names(schema_type: Any) -> str:
    names = [schema_type] if isinstance(schema_type, str) else list(schema_type)
    names = [n for n in names if n != "null"]
    return " or ".join(names)


def _allowed_fields(schema: Schema) -> list[str]:
    return sorted(schema.get("properties", {}))


def _describe(error: jsonschema.ValidationError) -> list[tuple[tuple[str | int, ...], str, str]]:
    """(field path, message, fix) for one jsonschema error."""
    path = tuple(error.absolute_path)
    field = format_path(path) or "the document"
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = _allowed_fields(error.schema)
        patterns = error.schema.get("patternProperties", {})
        out = []
        for key in sorted(str(k) for k in error.instance):
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f'Did you mean "{close[0]}"? ' if close else ""
            fix = (
                f"{hint}Remove the field or correct its spelling or indentation. "
                f"The fields allowed in {field} are: {', '.join(allowed)}."
            )
            field_path = (*path, key)
            out.append(
                (field_path, f'unknown field "{format_path(field_path)}"', fix)  # strict decoding
            )
        return out
    if kind == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        return [
            (
                (*path, key),
                f"{format_path((*path, key))}: Required value",
                f"Add `{key}:` under {field}.",
            )
            for key in missing
        ]
    if kind == "type":
        expected = _type_names(error.validator_value)
        return [
            (
                path,
                f"{field}: Invalid value: {_value(error.instance)}: must be of type {expected}",
                f"Write {field} as a{'n' if expected[0] in 'aeiou' else ''} {expected}"
                + (" (without quotes)." if expected in ("integer", "number", "boolean") else "."),
            )
        ]
    if kind == "enum":
        values = ", ".join(_value(v) for v in error.validator_value)
        return [
            (
                path,
                f"{field}: Unsupported value: {_value(error.instance)}: supported values: {values}",
                f"Use one of the supported values (they are case-sensitive): {values}.",
            )
        ]
    if kind == "oneOf" and _EXCLUSIVE in error.schema:
        keys = error.schema[_EXCLUSIVE]
        given = [k for k in keys if isinstance(error.instance, dict) and k in error.instance]
        return [
            (
                path,
                f"{field}: only one of {', '.join(keys)} may be set, found {', '.join(given)}",
                f"Keep one of {', '.join(given)}: they are alternatives.",
            )
        ]
    if kind in ("anyOf", "oneOf") and error.context:
        if all(e.validator == "type" and not e.path for e in error.context):
            # int-or-string and the like: one message naming every type allowed.
            expected = " or ".join(
                dict.fromkeys(_type_names(e.validator_value) for e in error.context)
            )
            return [
                (
                    path,
                    f"{field}: Invalid value: {_value(error.instance)}: must be of type {expected}",
                    f"Write {field} as a {expected}.",
                )
            ]
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None:
            return _describe(best)
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = "greater" if "inimum" in kind else "less"
        return [
            (
                path,
                f"{field}: Invalid value: {_value(error.instance)}: must be {word} than or equal "
                f"to {error.validator_value}",
                f"Use a value in the allowed range for {field}.",
            )
        ]
    if kind == "pattern":
        return [
            (
                path,
                f"{field}: Invalid value: {_value(error.instance)}: must match the pattern "
                f"{error.validator_value}",
                f"Write {field} in the expected format.",
            )
        ]
    return [(path, f"{field}: {error.message}", f"Correct {field}.")]


def validate_schema(document: Document) -> list[Finding]:
    """The schema findings of one document: strict, every error (up to a limit)."""
    if not document.api_version or not document.kind:
        missing = [k for k in ("apiVersion", "kind") if not getattr(document, _attr(k))]
        return [
            document.finding(
                SCHEMA_VALIDATION_ERROR,
                f"Schema validation error: {', '.join(f'{k} not set' for k in missing)}",
                fix="Start every resource with `apiVersion:` and `kind:` "
                "(for example `apiVersion: networking.istio.io/v1` and `kind: VirtualService`).",
            )
        ]
    schema = schema_for(document.api_version, document.kind)
    if schema is None:
        return [_unknown_kind(document)]
    findings: dict[tuple[str, str], Finding] = {}
    errors = sorted(schema.errors(document.data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        for path, message, fix in _describe(error):
            finding = document.finding(
                SCHEMA_VALIDATION_ERROR,
                f"Schema validation error: {message}",
                path=path,
                fix=fix,
            )
            findings.setdefault((finding.path, finding.message), finding)
    has_metadata = isinstance(document.data.get("metadata"), dict)
    if has_metadata and not document.name and not document.metadata.get("generateName"):
        finding = document.finding(
            SCHEMA_VALIDATION_ERROR,
            "Schema validation error: metadata.name: Required value: name or generateName is "
            "required",
            path=("metadata",),
            fix="Give the resource a name: `metadata:` then `name: <name>` indented under it.",
        )
        findings.setdefault((finding.path, finding.message), finding)
    return list(findings.values())[:MAX_FINDINGS_PER_DOCUMENT]


def _attr(key: str) -> str:
    return "api_version" if key == "apiVersion" else key
