"""`istiolab analyze [FILE...]`: istioctl analyze on the running sandbox, plus files not applied.

    istiolab analyze                               what is applied, in namespace default
    istiolab analyze -A                            ... in every namespace
    istiolab analyze labs/03/virtual-service.yaml  ... as it would be once that file is applied

Like istioctl analyze, it reads everything the cluster (here: the sandbox's control plane) holds
and adds the files, which replace applied resources of the same kind, namespace and name. It
reports on the resources of the namespace analyzed (and on every resource in the files); the
others are context that references may point at. When the sandbox is not running, only the files
are analyzed, as `istiolab validate` would. Exit status 1 when there is an error.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, IstiolabError
from ..sandbox import api, lifecycle
from ..sandbox.store import RESOURCE_TYPES
from ..validation import Document, format_report, load_paths, validate_documents
from ..validation.loading import CLUSTER_SCOPED_KINDS

DEFAULT_NAMESPACE = "default"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "analyze",
        help="find problems in the applied resources, and in files before applying them "
        "(istioctl analyze)",
        description="Analyze the resources applied to the sandbox (hosts, subsets, gateways, "
        "selectors, schemas), together with FILEs that are not applied yet, and report what "
        "istioctl analyze would.",
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="YAML files or directories, as if applied"
    )
    parser.add_argument("-n", "--namespace", help="the namespace to analyze (default: default)")
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="analyze every namespace"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    namespace = args.namespace or DEFAULT_NAMESPACE
    loaded = load_paths(args.files) if args.files else None
    files = [_in_namespace(d, args.namespace) for d in loaded.documents] if loaded else []
    port = lifecycle.control_plane_port(lifecycle.state_dir())
    if port is None:
        if not args.files:
            raise IstiolabError(
                "the sandbox is not running, and no files were given: there is nothing to analyze",
                fix="istiolab up, or name files: istiolab analyze FILE...",
            )
        print("The sandbox is not running: analyzing only the files given.", file=sys.stderr)
        applied: list[Document] = []
    else:
        applied = applied_documents(port)

    replaced = {_key(d) for d in files}
    applied = [d for d in applied if _key(d) not in replaced]
    analyzed = [d for d in applied if args.all_namespaces or d.namespace == namespace]
    context = [d for d in applied if not (args.all_namespaces or d.namespace == namespace)]
    report = validate_documents(
        [*analyzed, *files], context, skipped=loaded.skipped if loaded else ()
    )
    if loaded:
        report.extend(loaded.findings)
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def applied_documents(port: int) -> list[Document]:
    """Every resource the sandbox's control plane holds, as validation reads resources."""
    documents = []
    for resource_type in RESOURCE_TYPES:
        if not resource_type.stored:
            continue  # pods: the Deployments that make them are read instead
        answer = api.call(
            port, "/get", {"kind": resource_type.resource, "name": None, "namespace": None}
        )
        documents.extend(_document(manifest) for manifest in answer)
    return documents


def _document(manifest: dict[str, Any]) -> Document:
    # No file: a finding names the resource only, as istioctl analyze does for a live cluster.
    return Document(manifest, file="")


def _in_namespace(document: Document, namespace: str | None) -> Document:
    """A document from a file lands in -n NAMESPACE when it names none, as with apply."""
    if (
        namespace is None
        or document.kind in CLUSTER_SCOPED_KINDS
        or not isinstance(document.data, dict)
        or document.metadata.get("namespace")
    ):
        return document
    data = copy.deepcopy(document.data)
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    data["metadata"] = {**metadata, "namespace": namespace}
    return dataclasses.replace(document, data=data)


def _key(document: Document) -> tuple[str, str, str, str]:
    return document.group, document.kind, document.namespace, document.name
