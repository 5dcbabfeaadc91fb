"""kubectl-shaped commands for the sandbox: same files, same flags as the kubectl the docs show.

    istiolab apply -f FILE|DIR [-f ...] | -k DIR [-n NAMESPACE]
    istiolab get KIND [NAME] [-n NAMESPACE | -A] [-o yaml|json|name]
    istiolab delete -f FILE | KIND NAME [-n NAMESPACE]
    istiolab label KIND NAME KEY=VALUE|KEY- ... [--overwrite] [-n NAMESPACE]
    istiolab rollout restart deployment[/NAME] [-n NAMESPACE]

Each one is a request to the sandbox's control plane, which validates, stores, reconfigures every
proxy, and answers once every proxy runs the result.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import EXIT_USAGE, IstiolabError
from ..sandbox import api, lifecycle
from ..table import format_table


def register(commands: argparse._SubParsersAction) -> None:
    apply = commands.add_parser("apply", help="create or update resources (kubectl apply)")
    apply.add_argument("-f", "--filename", action="append", default=[], help="a file or folder")
    apply.add_argument("-k", "--kustomize", action="append", default=[], help="a kustomize folder")
    _namespace(apply)
    apply.set_defaults(handler=_apply)

    get = commands.add_parser("get", help="show resources (kubectl get)")
    get.add_argument("kind", help="e.g. virtualservices, vs, pods, deploy, svc")
    get.add_argument("name", nargs="?")
    _namespace(get)
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", choices=("yaml", "json", "name"))
    get.set_defaults(handler=_get)

    delete = commands.add_parser("delete", help="delete resources (kubectl delete)")
    delete.add_argument("kind", nargs="?")
    delete.add_argument("name", nargs="?")
    delete.add_argument("-f", "--filename", action="append", default=[])
    _namespace(delete)
    delete.set_defaults(handler=_delete)

    label = commands.add_parser("label", help="add, change or remove labels (kubectl label)")
    label.add_argument("kind")
    label.add_argument("name")
    label.add_argument("labels", nargs="+", metavar="KEY=VALUE|KEY-")
    label.add_argument("--overwrite", action="store_true")
    _namespace(label)
    label.set_defaults(handler=_label)

    rollout = commands.add_parser("rollout", help="restart a deployment's pods (kubectl rollout)")
    rollout.add_argument("action", choices=("restart",))
    rollout.add_argument("target", metavar="deployment[/NAME]")
    _namespace(rollout)
    rollout.set_defaults(handler=_rollout)


def _namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace")


def _call(path: str, body: dict[str, Any]) -> Any:
    port = lifecycle.control_plane_port()
    if port is None:
        raise IstiolabError("the sandbox is not running", fix="istiolab up")
    return api.call(port, path, body)


def _absolute(paths: list[str]) -> list[str]:
    # The control plane runs in another directory: send it paths that mean the same there.
    return [str(Path(p).resolve()) for p in paths]


def _apply(args: argparse.Namespace) -> int:
    if not args.filename and not args.kustomize:
        raise IstiolabError(
            "error: must specify one of -f and -k",
            fix="istiolab apply -f FILE",
            exit_code=EXIT_USAGE,
        )
    lines = _call(
        "/apply",
        {
            "files": _absolute(args.filename),
            "kustomize": _absolute(args.kustomize),
            "namespace": args.namespace,
        },
    )
    print("\n".join(lines))
    return 0


def _get(args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else (args.namespace or "default")
    objects = _call("/get", {"kind": args.kind, "name": args.name, "namespace": namespace})
    if args.name and not objects:
        raise IstiolabError(f'Error from server (NotFound): {args.kind} "{args.name}" not found')
    if args.output == "json":
        document = (
            objects[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objects}
        )
        print(json.dumps(document, indent=2))
    elif args.output == "yaml":
        document = (
            objects[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objects}
        )
        print(yaml.safe_dump(document, sort_keys=False).rstrip())
    elif args.output == "name":
        for obj in objects:
            print(f"{obj['kind'].lower()}/{obj['metadata']['name']}")
    elif not objects:
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        print(f"No resources found in {where}.")
    else:
        header = ("NAMESPACE", "NAME", "AGE") if namespace is None else ("NAME", "AGE")
        rows = [
            ((obj["metadata"].get("namespace", ""),) if namespace is None else ())
            + (obj["metadata"]["name"], _age(obj["metadata"].get("creationTimestamp")))
            for obj in objects
        ]
        print(format_table(header, rows))
    return 0


def _delete(args: argparse.Namespace) -> int:
    if args.filename:
        body = {"files": _absolute(args.filename), "namespace": args.namespace}
    elif args.kind and args.name:
        body = {"kind": args.kind, "name": args.name, "namespace": args.namespace}
    else:
        raise IstiolabError(
            "error: give -f FILE, or a KIND and a NAME",
            fix="istiolab delete -f FILE, or istiolab delete virtualservice reviews",
            exit_code=EXIT_USAGE,
        )
    print("\n".join(_call("/delete", body)))
    return 0


def _label(args: argparse.Namespace) -> int:
    body = {
        "kind": args.kind,
        "name": args.name,
        "labels": args.labels,
        "overwrite": args.overwrite,
        "namespace": args.namespace,
    }
    print(_call("/label", body))
    return 0


def _rollout(args: argparse.Namespace) -> int:
    kind, _, name = args.target.partition("/")
    if kind not in ("deployment", "deployments", "deploy"):
        raise IstiolabError(
            f"error: the sandbox restarts deployments only, not {kind!r}",
            fix="istiolab rollout restart deployment/NAME",
            exit_code=EXIT_USAGE,
        )
    lines = _call("/rollout-restart", {"namespace": args.namespace, "name": name or None})
    print("\n".join(lines))
    return 0


def _age(timestamp: str | None) -> str:
    """kubectl's AGE column: 45s, 12m, 3h, 2d."""
    if not timestamp:
        return "<unknown>"
    created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((datetime.now(UTC) - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
