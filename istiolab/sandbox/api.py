"""How the `istiolab` command talks to the sandbox's control plane: JSON over HTTP on loopback.

The control plane runs in the background (like istiod and the Kubernetes API server together);
each command is one request to it. The server side maps a path to a method of the control plane;
the client turns an error answer back into an IstiolabError with the control plane's message and
fix, so the learner sees the same clear message whichever side noticed the problem.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import IstiolabError

HOST = "127.0.0.1"
# Written by the running control plane into its state directory: its pid and API port.
INFO_FILE = "controlplane.json"

Handler = Callable[[dict[str, Any]], Any]


class ApiServer:
    """Serve `routes` (path -> handler taking the JSON body, returning a JSON-able answer)."""

    def __init__(self, port: int, routes: dict[str, Handler]) -> None:
        routes_ = routes

        class RequestHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                handler = routes_.get(self.path)
                if handler is None:
                    self._answer(404, {"error": f"no such call: {self.path}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    self._answer(200, {"result": handler(body)})
                except IstiolabError as exc:
                    self._answer(400, {"error": exc.message, "fix": exc.fix, "exit": exc.exit_code})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the control plane logs what it does itself

        self._server = ThreadingHTTPServer((HOST, port), RequestHandler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._serving = False

    def serve_in_background(self) -> None:
        threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True).start()
        self._serving = True

    def close(self) -> None:
        if self._serving:  # shutdown() waits for serve_forever, which must have started
            self._server.shutdown()
        self._server.server_close()


class ControlPlaneUnreachable(IstiolabError):
    pass


def call(port: int, path: str, body: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
    """Ask the control plane; return its answer or raise its error as an IstiolabError."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = json.dumps(body or {})
        connection.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = json.loads(response.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ControlPlaneUnreachable(
            f"the sandbox's control plane does not answer on 127.0.0.1:{port} ({exc})",
            fix="start it with: istiolab up",
        ) from None
    finally:
        connection.close()
    if "error" in payload:
        raise IstiolabError(payload["error"], payload.get("fix", ""), payload.get("exit", 1))
    return payload.get("result")
