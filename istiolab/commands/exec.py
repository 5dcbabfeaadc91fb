"""`istiolab exec`: run a command as if inside a pod of the sandbox, like `kubectl exec`.

    istiolab exec deploy/productpage-v1 -- curl -s http://reviews:9080/reviews/0
    istiolab exec --outside-mesh -- curl -s http://productpage:9080/productpage

A sandbox pod is a process on this machine; a pod with a sidecar sends its requests through it,
using it as its HTTP proxy. `exec WORKLOAD` gives the command that same proxy (HTTP_PROXY), so
its requests leave as the pod's would: with the workload's identity, its mTLS, its retries and
routing rules. `exec --outside-mesh` (or a WORKLOAD without a sidecar) gives it instead the path
of a pod outside the mesh, like the `curl` pod in a namespace without injection in Istio's
tasks: a plain TCP connection to one of the Service's pods (sandbox/plain_proxy.py), so a STRICT
workload's sidecar resets it exactly as on a cluster (curl exit code 56).
"""

from __future__ import annotations

import argparse
import os
import subprocess
from typing import Any

from ..errors import IstiolabError
from ..sandbox import api, lifecycle
from ..sandbox.plain_proxy import NoEndpoint, PlainClientProxy
from .proxies import find_workload

_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "exec",
        help="run a command with a pod's network view: through its sidecar, or from outside "
        "the mesh",
        description="Run COMMAND with HTTP_PROXY set as a sandbox pod's is: the sidecar of "
        "WORKLOAD (deploy/NAME, a pod name or a prefix of one), or, with --outside-mesh, the "
        "path of a pod without a sidecar. URLs name Services as a pod would: "
        "http://reviews:9080/reviews/0.",
    )
    parser.add_argument("workload", nargs="?", help="deploy/NAME or a pod (name or prefix)")
    parser.add_argument(
        "--outside-mesh",
        action="store_true",
        help="call as a client without a sidecar (plaintext, no identity)",
    )
    parser.add_argument("-n", "--namespace", help="the workload's namespace (default: default)")
    # The command after `--` is set aside by istiolab.cli before parsing (args.command_line);
    # this entry only shows it in the usage line.
    parser.add_argument("command", nargs="*", metavar="-- COMMAND", help="what to run")
    parser.set_defaults(handler=_exec)


def _exec(args: argparse.Namespace) -> int:
    argv = list(getattr(args, "command_line", None) or args.command)
    if not argv:
        raise IstiolabError(
            "no command to run",
            fix="put it after --, e.g. istiolab exec --outside-mesh -- curl -s "
            "http://productpage:9080/productpage",
        )
    if bool(args.workload) == bool(args.outside_mesh):
        raise IstiolabError(
            "name a workload or give --outside-mesh (one of the two)",
            fix="istiolab exec deploy/productpage-v1 -- CMD, or "
            "istiolab exec --outside-mesh -- CMD",
        )
    port = lifecycle.control_plane_port(lifecycle.state_dir())
    if port is None:
        raise IstiolabError("the sandbox is not running", fix="istiolab up")
    sidecar = _sidecar_of(port, args.workload, args.namespace) if args.workload else None
    if sidecar is not None:
        return _run(argv, sidecar)
    from ..targets.sandbox import SandboxTarget  # the Services and their pods, as kube-proxy

    target = SandboxTarget(lifecycle.state_dir())

    def resolve(host: str, service_port: int) -> tuple[str, int]:
        try:
            found = target.plain_endpoint(host, service_port)
        except IstiolabError as error:  # the sandbox stopped while the command ran
            raise NoEndpoint(str(error)) from None
        if isinstance(found, tuple):
            return found
        raise NoEndpoint(found.error)

    with PlainClientProxy(resolve) as plain:
        return _run(argv, plain.url)


def _run(argv: list[str], proxy_url: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k not in _PROXY_VARIABLES}
    environment.update(http_proxy=proxy_url, HTTP_PROXY=proxy_url, no_proxy="", NO_PROXY="")
    try:
        return subprocess.call(argv, env=environment)
    except FileNotFoundError:
        raise IstiolabError(
            f"command not found: {argv[0]}", fix=f"install {argv[0]}, or run another command"
        ) from None


def _sidecar_of(port: int, workload: str, namespace: str | None) -> str | None:
    """The HTTP proxy URL of the workload's sidecar; None when its pod has no sidecar (it is
    outside the mesh, whatever its name)."""
    entries: list[dict[str, Any]] = api.call(port, "/proxies")
    entry = find_workload(entries, workload, namespace, command="istiolab exec")
    if entry.get("kind") == "gateway":
        raise IstiolabError(
            "the ingress gateway has no app to run a command in",
            fix="name a Bookinfo workload, e.g. deploy/productpage-v1",
        )
    if entry.get("outbound_port"):
        return f"http://127.0.0.1:{entry['outbound_port']}"
    return None
