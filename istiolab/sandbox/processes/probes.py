"""Readiness probes, as a Kubernetes readinessProbe does them, on loopback.

("tcp", port): a TCP connection to 127.0.0.1:port succeeds (tcpSocket).
("http", url): a GET of the url answers with a status from 200 to 399 (httpGet). Sent straight
to the address, never through a proxy the learner may have set (HTTP_PROXY).
"""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

Probe = tuple[str, int] | tuple[str, str]

HOST = "127.0.0.1"


def parse_probe(value: object, owner: str) -> Probe | None:
    """Check a probe description; raise ValueError naming `owner` if it is not one."""
    if value is None:
        return None
    if isinstance(value, tuple | list) and len(value) == 2:
        kind, target = value
        if kind == "tcp" and isinstance(target, int) and 0 < target < 65536:
            return ("tcp", target)
        if kind == "http" and isinstance(target, str):
            parts = urlsplit(target)
            if parts.scheme == "http" and parts.hostname and parts.port:
                return ("http", target)
    raise ValueError(
        f"{owner}: readiness probe {value!r}: expected ('tcp', port) or "
        "('http', 'http://127.0.0.1:port/path')"
    )


def describe(probe: Probe | None) -> str:
    if probe is None:
        return "no readiness probe"
    kind, target = probe
    return f"TCP {HOST}:{target}" if kind == "tcp" else f"GET {target}"


def check(probe: Probe | None, timeout: float) -> bool:
    """Run the probe once; True if it passed."""
    if probe is None:
        return True
    kind, target = probe
    if kind == "tcp":
        try:
            with socket.create_connection((HOST, int(target)), timeout=timeout):
                return True
        except OSError:
            return False
    parts = urlsplit(str(target))
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    connection = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "istiolab-probe"})
        response = connection.getresponse()
        response.read()
        return 200 <= response.status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
