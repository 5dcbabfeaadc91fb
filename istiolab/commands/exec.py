"""`istiolab exec`: run a command as if inside a pod of the sandbox, like `kubectl exec`.

    istiolab exec deploy/productpage-v1 -- curl -s http://reviews:9080/reviews/0
    istiolab exec --outside-mesh -- curl -s http://productpage:9080/productpage

A sandbox pod is a process on this machine that reaches Services through an HTTP proxy: its
sidecar when it has one, else the kube-proxy stand-in. `exec` gives the command the same proxy
(HTTP_PROXY), so its requests leave as the pod's would: through the pod's sidecar, with the
workload's identity and its mTLS, retries and routing, or, with --outside-mesh, as a client
without a sidecar, in plaintext, like Istio's tasks' `curl` pod in a namespace without injection.

One difference from a cluster: a plaintext caller refused by a STRICT workload sees its
connection reset there (curl: "(56) Recv failure"); here the kube-proxy stand-in in between
answers 503 "upstream connect error or disconnect/reset before headers" instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from ..errors import IstiolabError
from ..sandbox import api, lifecycle
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
    proxy_url = _proxy_for(args.workload, args.namespace)
    environment = {k: v for k, v in os.environ.items() if k not in _PROXY_VARIABLES}
    environment.update(http_proxy=proxy_url, HTTP_PROXY=proxy_url, no_proxy="", NO_PROXY="")
    try:
        return subprocess.call(argv, env=environment)
    except FileNotFoundError:
        raise IstiolabError(
            f"command not found: {argv[0]}", fix=f"install {argv[0]}, or run another command"
        ) from None


def _proxy_for(workload: str | None, namespace: str | None) -> str:
    """The HTTP proxy a pod of `workload` uses (its sidecar's), or, for None, the one a pod
    without a sidecar uses."""
    port = lifecycle.control_plane_port(_state_dir())
    if port is None:
        raise IstiolabError("the sandbox is not running", fix="istiolab up")
    if workload is None:
        return str(api.call(port, "/status")["kube_proxy"])
    entries: list[dict[str, Any]] = api.call(port, "/proxies")
    entry = find_workload(entries, workload, namespace, command="istiolab exec")
    if entry.get("kind") == "gateway":
        raise IstiolabError(
            "the ingress gateway has no app to run a command in",
            fix="name a Bookinfo workload, e.g. deploy/productpage-v1",
        )
    if entry.get("outbound_port"):
        return f"http://127.0.0.1:{entry['outbound_port']}"
    # A pod without a sidecar: it is outside the mesh, whatever its name.
    return str(api.call(port, "/status")["kube_proxy"])


def _state_dir() -> Path:
    return Path(os.environ.get("ISTIOLAB_STATE_DIR") or lifecycle.STATE_DIR)
