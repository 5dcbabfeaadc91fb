"""The `istiolab` command.

    istiolab bookinfo serve-all --reviews v3   Bookinfo without a mesh (same as python -m bookinfo)
    istiolab validate PATH... [--known PATH]   check YAML offline like the API server and istioctl
    istiolab up | down | status                the sandbox mesh (the default target)
    istiolab apply | get | delete | label | rollout    kubectl-shaped commands for the sandbox
    istiolab proxy-config | logs | analyze     istioctl-shaped commands for the sandbox
    istiolab exec WORKLOAD|--outside-mesh -- CMD   run CMD with a pod's view of the mesh
    istiolab traces [--service NAME]           recent traces as waterfalls (Zipkin's view)
    istiolab metrics                           istio_requests_total by caller, callee, outcome
    istiolab up|down --target kind             create or delete the kind cluster with Istio
    istiolab doctor                            check the prerequisites of the kind target
    istiolab --version

Each command lives in its own module under istiolab/commands/ with a `register(subparsers)`
function; this file only assembles them and turns an IstiolabError into a message and exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import EXIT_OK, IstiolabError

COMMAND_MODULES: tuple[str, ...] = (
    "cluster",
    "resources",
    "exec",
    "proxies",
    "analyze",
    "validate",
    "telemetry",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="istiolab", description="A hands-on Istio course.")
    parser.add_argument("--version", action="version", version=f"istiolab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "bookinfo",
        help="run Bookinfo without a mesh (see: istiolab bookinfo --help)",
        add_help=False,
    )
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"istiolab.commands.{module_name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `istiolab bookinfo ...` hands everything after it to Bookinfo's own command line.
    if argv[:1] == ["bookinfo"]:
        from bookinfo import cli as bookinfo_cli  # Flask and gunicorn: only when needed

        return bookinfo_cli.main(argv[1:], prog="istiolab bookinfo")
    # `istiolab exec ... -- CMD ARGS`: CMD's arguments are its own, not options of istiolab's,
    # so they are set aside before argparse sees them (as kubectl exec does).
    command: list[str] = []
    if argv[:1] == ["exec"] and "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.command_line = command
    try:
        return args.handler(args) or EXIT_OK
    except IstiolabError as exc:
        print(f"istiolab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
