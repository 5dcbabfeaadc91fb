"""`istiolab up`, `down`, `status` and `doctor`, on either target.

    istiolab up [--gateway-port PORT]                the sandbox mesh (the default target)
    istiolab up --target kind [--dry-run] [...]      a kind cluster with Istio and Bookinfo
    istiolab down [--target kind]                    stop either
    istiolab status                                  the sandbox's workloads, like kubectl get pods
    istiolab doctor [--context NAME]                 the kind target's prerequisites, with fixes

The kind target runs scripts/cluster-up.sh and scripts/cluster-down.sh, the same readable bash
the docs show, so every step and every prerequisite check has one implementation.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

from ..errors import IstiolabError
from ..sandbox import lifecycle
from ..table import format_table

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TARGETS = ("sandbox", "kind")


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the prerequisites of the kind target, with the fix for each failure"
    )
    _context_option(doctor)
    doctor.set_defaults(handler=_doctor)

    up = commands.add_parser("up", help="start the mesh (sandbox by default, or --target kind)")
    _target_option(up)
    up.add_argument(
        "--gateway-port", type=int, default=8080, help="sandbox: the ingress gateway's port"
    )
    up.add_argument(
        "--port-forward-port",
        type=int,
        default=9080,
        help="sandbox: where productpage is forwarded to (like kubectl port-forward)",
    )
    up.add_argument(
        "--zipkin-port", type=int, default=9411, help="sandbox: the Zipkin trace collector's port"
    )
    up.add_argument(
        "--metrics-port",
        type=int,
        default=15020,
        help="sandbox: the request metrics' port (Prometheus format, /stats/prometheus)",
    )
    _context_option(up)
    up.add_argument("--skip-images", action="store_true", help="kind: do not build the images")
    _common_script_options(up)
    up.set_defaults(handler=_up)

    down = commands.add_parser("down", help="stop the mesh and everything it started")
    _target_option(down)
    _context_option(down)
    down.add_argument("--delete-downloads", action="store_true", help="kind: also delete .bin/")
    _common_script_options(down)
    down.set_defaults(handler=_down)

    status = commands.add_parser("status", help="the sandbox's workloads and proxies")
    status.set_defaults(handler=_status)


def _target_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=TARGETS, default="sandbox", help="where the mesh runs")


def _context_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context", help="kind: an existing cluster's kubectl context instead of the course's"
    )


def _common_script_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-other-context",
        action="store_true",
        help="kind: allow changing a context that is not the course's kind-istiolab",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="kind: print the commands that would change something",
    )


def _script_args(args: argparse.Namespace) -> list[str]:
    flags = []
    if args.context:
        flags += ["--context", args.context]
    for name in ("allow_other_context", "dry_run", "skip_images", "delete_downloads"):
        if getattr(args, name, False):
            flags.append("--" + name.replace("_", "-"))
    return flags


def _doctor(args: argparse.Namespace) -> int:
    return run_script("cluster-up.sh", ["--check", *_script_args(args)])


def _up(args: argparse.Namespace) -> int:
    if args.target == "kind":
        return run_script("cluster-up.sh", _script_args(args))
    _sandbox_only(args)
    print("Starting the sandbox mesh (control plane, Bookinfo, proxies) ...", flush=True)
    state = lifecycle.up(
        gateway_port=args.gateway_port,
        port_forward_port=args.port_forward_port,
        zipkin_port=args.zipkin_port,
        metrics_port=args.metrics_port,
    )
    print_status(state)
    print(
        f"\nproductpage: {state['port_forward']}/productpage (like kubectl port-forward); "
        f"the ingress gateway listens on {state['gateway']} once a Gateway is applied."
        f"\ntraces: {state['zipkin']} (Zipkin API; istiolab traces); "
        f"metrics: {state['metrics']} (istiolab metrics)"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    if args.target == "kind":
        return run_script("cluster-down.sh", _script_args(args))
    _sandbox_only(args)
    lifecycle.down()
    print("The sandbox is stopped: no process of it is left running.")
    return 0


def _status(args: argparse.Namespace) -> int:
    print_status(lifecycle.status())
    return 0


def _sandbox_only(args: argparse.Namespace) -> None:
    used = [flag for flag in _script_args(args)]
    if used:
        raise IstiolabError(
            f"{' '.join(used)} only applies to --target kind",
            fix="leave it out, or add --target kind",
        )


def print_status(state: dict[str, Any]) -> None:
    rows = [
        (
            w["namespace"],
            w["name"],
            w["ready"],
            w["restarts"],
            "yes" if w["sidecar"] else "no",
            w.get("config", "-"),
            ",".join(str(p) for p in [w["app_port"], *w["proxy_ports"]]),
        )
        for w in state["workloads"]
    ]
    header = ("NAMESPACE", "NAME", "READY", "RESTARTS", "SIDECAR", "CONFIG", "PORTS")
    print(format_table(header, rows))


def run_script(name: str, arguments: list[str]) -> int:
    """Run one of the repository's scripts with the terminal attached; return its exit code."""
    script = SCRIPTS / name
    if not script.is_file():
        raise IstiolabError(
            f"{script} is missing: the kind target runs the scripts of a clone of the repository",
            fix="run istiolab from a git clone, installed with ./scripts/quickstart.sh",
        )
    return subprocess.run(["bash", str(script), *arguments], check=False).returncode
