"""`python -m bookinfo`: run Bookinfo without a mesh.

    python -m bookinfo serve reviews --version v3 --port 9082   one service
    python -m bookinfo serve-all --reviews v2                    all four, wired together

`serve` is what each container image runs. `serve-all` starts the four services as separate
processes on 127.0.0.1, productpage on port 9080 and the others on the next three ports, the way
they would run as pods without Istio: productpage calls details and reviews directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import variants
from .config import ConfigError, Settings
from .local import LocalBookinfo, StartupError
from .server import PortInUseError, create_service_app, serve

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None, prog: str = "python -m bookinfo") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, PortInUseError, LookupError, StartupError) as exc:
        print(f"bookinfo: error: {exc}", file=sys.stderr)
        if isinstance(exc, PortInUseError):
            print("  Stop what uses it, or choose another port with --port.", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


def build_parser(prog: str = "python -m bookinfo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run Istio's Bookinfo sample app, in Python."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    one = commands.add_parser("serve", help="serve one service (what a container image runs)")
    one.add_argument("service", choices=variants.SERVICES)
    one.add_argument(
        "--version",
        help="service version, e.g. v3 for reviews with red stars "
        "(sets the same environment variables as that image; variables you set win)",
    )
    one.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    one.add_argument(
        "--port", type=_port, default=9080, help="port to listen on (default: %(default)s)"
    )
    one.set_defaults(handler=_serve_one)

    everything = commands.add_parser("serve-all", help="serve all four services, wired together")
    everything.add_argument(
        "--reviews",
        default="v1",
        choices=[v.version for v in variants.VARIANTS if v.service == "reviews"],
        help="which reviews version answers: v1 no stars, v2 black stars, v3 red stars "
        "(default: %(default)s)",
    )
    everything.add_argument(
        "--port", type=_port, default=9080, help="productpage's port; the others use the next three"
    )
    everything.set_defaults(handler=_serve_all)
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def _serve_one(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.version:
        # The image's variables first, then whatever the environment says (as in a pod spec).
        environ = {**variants.find(args.service, args.version).env, **environ}
    app = create_service_app(args.service, Settings.from_environ(environ))
    serve(app, args.host, args.port)
    return EXIT_OK


def _serve_all(args: argparse.Namespace) -> int:
    with LocalBookinfo(reviews_version=args.reviews, port=args.port) as bookinfo:
        bookinfo.print_summary()
        return bookinfo.wait()
