"""The `istiolab` command.

istiolab bookinfo serve-all --reviews v3   Bookinfo without a mesh (same as python -m bookinfo)
istiolab --version
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bookinfo import cli as bookinfo_cli

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="istiolab", description="A hands-on Istio course.")
    parser.add_argument("--version", action="version", version=f"istiolab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "bookinfo",
        help="run Bookinfo without a mesh (see: istiolab bookinfo --help)",
        add_help=False,
    )
    # `istiolab bookinfo ...` hands everything after it to Bookinfo's own command line.
    if argv[:1] == ["bookinfo"]:
        return bookinfo_cli.main(argv[1:], prog="istiolab bookinfo")
    parser.parse_args(argv)
    return 0
