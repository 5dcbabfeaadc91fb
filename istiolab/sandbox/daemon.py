"""The control plane as a background process: `python -m istiolab.sandbox.daemon STATE_DIR`.

`istiolab up` starts it and waits until it answers; `istiolab down` asks it to stop everything.
It writes controlplane.json (its pid and API port) once the mesh serves, and removes it on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from ..errors import IstiolabError
from .api import INFO_FILE, ApiServer
from .controlplane import ControlPlane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m istiolab.sandbox.daemon")
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--gateway-port", type=int, default=8080)
    parser.add_argument("--port-forward-port", type=int, default=9080)
    parser.add_argument("--zipkin-port", type=int, default=9411)
    parser.add_argument("--metrics-port", type=int, default=15020)
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        plane = ControlPlane(
            args.state_dir,
            gateway_port=args.gateway_port,
            port_forward_port=args.port_forward_port,
            zipkin_port=args.zipkin_port,
            metrics_port=args.metrics_port,
        )
    except IstiolabError as exc:  # e.g. a bad ISTIOLAB_CERT_TTL: `up` shows this line
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    server = ApiServer(0, {**plane.routes(), "/shutdown": lambda _: stop.set()})
    info = args.state_dir / INFO_FILE
    try:
        plane.start()
        server.serve_in_background()
        info.write_text(json.dumps({"pid": os.getpid(), "api_port": server.port}))
        print(f"control plane ready: API on 127.0.0.1:{server.port}", flush=True)
        stop.wait()
        return 0
    except IstiolabError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception:  # a bug: keep the traceback in the control plane's log
        traceback.print_exc()
        return 1
    finally:
        info.unlink(missing_ok=True)
        server.close()
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
