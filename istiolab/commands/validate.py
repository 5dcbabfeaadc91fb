"""`istiolab validate PATH... [--known PATH]`: check YAML offline, like the API server would.

    istiolab validate labs/03-request-routing/virtual-service.yaml --known manifests/bookinfo
    istiolab validate manifests/stages/02-gateway        (a kustomization: built, then checked)

Prints each finding in `istioctl analyze`'s format, with the field and the fix, or "No validation
issues found." Exit status 0 when there are no errors (warnings and infos are allowed), 1 when
there are.
"""

from __future__ import annotations

import argparse

from ..errors import EXIT_FAILED, EXIT_OK
from ..validation import format_report, validate_paths

HELP = "check Kubernetes, Istio and Gateway API YAML offline (schemas and references)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help=HELP,
        description=(
            "Check YAML files the way the API server (strict: unknown fields rejected), Istio's "
            "validation and istioctl analyze would, without a cluster. A directory is read "
            "recursively; a kustomization directory is built with `kubectl kustomize` first."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="YAML files or directories")
    parser.add_argument(
        "--known",
        action="append",
        default=[],
        metavar="PATH",
        help="resources that already exist (e.g. manifests/bookinfo): references may point at "
        "them, they are not reported on (repeatable)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    report = validate_paths(args.paths, known=args.known)
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED
