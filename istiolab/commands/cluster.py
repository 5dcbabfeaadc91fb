"""`istiolab up`, `down` and `doctor` for the kind target.

They run scripts/cluster-up.sh and scripts/cluster-down.sh, the same readable bash the docs show,
so there is one implementation of every step and every prerequisite check, not two.

    istiolab doctor [--context NAME]                   check prerequisites, with a fix per failure
    istiolab up --target kind [--dry-run] [...]        create the cluster with Istio and Bookinfo
    istiolab down --target kind [--dry-run] [...]      delete it
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from ..errors import IstiolabError

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TARGETS = ("kind",)


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check the prerequisites of the kind target, with the fix for each failure"
    )
    _context_option(doctor)
    doctor.set_defaults(handler=_doctor)

    up = commands.add_parser("up", help="start the mesh: a kind cluster with Istio and Bookinfo")
    _target_option(up)
    _context_option(up)
    up.add_argument("--skip-images", action="store_true", help="do not build and load the images")
    _common_script_options(up)
    up.set_defaults(handler=_up)

    down = commands.add_parser("down", help="stop the mesh: delete the kind cluster")
    _target_option(down)
    _context_option(down)
    down.add_argument("--delete-downloads", action="store_true", help="also delete .bin/")
    _common_script_options(down)
    down.set_defaults(handler=_down)


def _target_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=TARGETS, default="kind", help="where the mesh runs")


def _context_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context", help="an existing cluster's kubectl context instead of the course's kind one"
    )


def _common_script_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-other-context",
        action="store_true",
        help="allow changing a context that is not the course's kind-istiolab",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands that would change something"
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
    return run_script(
        "cluster-up.sh", ["--check", *(["--context", args.context] * bool(args.context))]
    )


def _up(args: argparse.Namespace) -> int:
    return run_script("cluster-up.sh", _script_args(args))


def _down(args: argparse.Namespace) -> int:
    return run_script("cluster-down.sh", _script_args(args))


def run_script(name: str, arguments: list[str]) -> int:
    """Run one of the repository's scripts with the terminal attached; return its exit code."""
    script = SCRIPTS / name
    if not script.is_file():
        raise IstiolabError(
            f"{script} is missing: the kind target runs the scripts of a clone of the repository",
            fix="run istiolab from a git clone, installed with ./scripts/quickstart.sh",
        )
    return subprocess.run(["bash", str(script), *arguments], check=False).returncode
