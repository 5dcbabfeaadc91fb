"""`python -m istiolab.sandbox.telemetry`: the sandbox's Zipkin collector and request metrics.

    python -m istiolab.sandbox.telemetry --state-dir DIR --zipkin-port 9411 --metrics-port PORT

Serves Zipkin's API on 127.0.0.1:<zipkin-port> and Istio's request metrics on
127.0.0.1:<metrics-port>/stats/prometheus, counted from DIR/telemetry/*.jsonl with the labels
DIR/telemetry/workloads.json gives. Runs until SIGTERM or SIGINT, then stops serving and exits 0.
A port that is taken is a one-line message and exit status 1.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from . import WORKLOADS_FILE, telemetry_dir
from .counter import AccessLogCounter
from .metrics import RequestMetrics
from .server import HOST, PortInUse, ZipkinCollector, listen, metrics_handler
from .spans import DEFAULT_MAX_SPANS, SpanStore

PROG = "python -m istiolab.sandbox.telemetry"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GC_THRESHOLD = 100_000  # allocations between two collections of the youngest generation


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="the sandbox's state dir")
    parser.add_argument("--zipkin-port", type=int, default=9411, help="Zipkin's API (9411)")
    parser.add_argument("--metrics-port", type=int, required=True, help="/stats/prometheus")
    parser.add_argument(
        "--max-spans",
        type=int,
        default=DEFAULT_MAX_SPANS,
        help=f"spans kept in memory; the oldest traces go first (default {DEFAULT_MAX_SPANS})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The store holds up to --max-spans spans of a dozen small objects each, none of them in a
    # reference cycle. Python's cycle collector would rescan them all again and again as spans
    # arrive; collecting the youngest generation less often keeps ingest cheap.
    gc.set_threshold(GC_THRESHOLD, 50, 100)
    directory = telemetry_dir(args.state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    metrics = RequestMetrics()
    counter = AccessLogCounter(directory, directory / WORKLOADS_FILE, metrics)
    collector = ZipkinCollector(SpanStore(args.max_spans))
    try:
        zipkin_server = listen(args.zipkin_port, collector.handler())
    except PortInUse as error:
        return _fail(f"{error.strerror}: Zipkin's API cannot listen there")
    try:
        metrics_server = listen(args.metrics_port, metrics_handler(metrics, counter))
    except PortInUse as error:
        zipkin_server.server_close()
        return _fail(f"{error.strerror}: the metrics cannot be served there")

    servers = (zipkin_server, metrics_server)
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    counter.start()
    print(
        f"telemetry: Zipkin on http://{HOST}:{zipkin_server.port}, metrics on "
        f"http://{HOST}:{metrics_server.port}/stats/prometheus, access logs from {directory}",
        flush=True,
    )
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, _stop)
        while True:
            time.sleep(3600)  # the servers and the counter work in their threads
    except _Stopped:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # stopping already
    for server in servers:
        server.shutdown()
        server.server_close()
    counter.stop()
    return 0


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
