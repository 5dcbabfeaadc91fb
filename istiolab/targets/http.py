"""HTTP from this machine, for both targets: to an ingress gateway's port, to a sidecar's HTTP-proxy
listener, to a pod's endpoint, or to an addon's API through the local end of a port-forward.

One HTTP/1.1 exchange per call over http.client, which reads no HTTP_PROXY variable: a learner's
proxy is never in the way.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from typing import Any

from .base import HttpResult


def http_request(
    host: str,
    port: int,
    target: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: str | None = None,
    timeout: float = 10.0,
) -> HttpResult:
    """One HTTP/1.1 exchange with host:port. `target` goes on the request line as given: a path,
    or an absolute URL when host:port is an HTTP proxy. An exchange that got no answer at all
    (refused, reset, timed out, not HTTP) is a result too: status None, and what happened in
    `error`. Repeated response headers are joined with ", ", under lower-case names."""
    start = time.monotonic()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(
            method,
            target,
            body=data.encode() if data is not None else None,
            headers=dict(headers or {}),
        )
        response = connection.getresponse()
        body = response.read().decode("utf-8", errors="replace")
        found: dict[str, str] = {}
        for name, value in response.getheaders():
            name = name.lower()
            found[name] = f"{found[name]}, {value}" if name in found else value
        return HttpResult(response.status, body, found, time.monotonic() - start)
    except ConnectionRefusedError:
        error = "connection refused"
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        error = "connection reset"  # http.client.RemoteDisconnected is one too
    except TimeoutError:
        error = "timed out"
    except http.client.HTTPException as exc:
        error = f"not an HTTP answer: {exc!r}"
    except OSError as exc:
        error = str(exc) or type(exc).__name__
    finally:
        connection.close()
    return HttpResult(status=None, seconds=time.monotonic() - start, error=error)


def fetch_json(port: int, path: str, timeout: float = 15.0) -> tuple[HttpResult, Any]:
    """GET `path` from 127.0.0.1:`port` (a port-forward's local end): the result, and its JSON
    document when the answer was 200 and JSON (else None)."""
    result = http_request("127.0.0.1", port, path, timeout=timeout)
    try:
        document = json.loads(result.body) if result.status == 200 else None
    except ValueError:
        document = None
    return result, document
