"""Requests sent from inside the cluster: the client command lines `kubectl exec` runs, and what
their output says.

The curl client pod (manifests/clients) runs `curl_command`; a Bookinfo workload, which has Python
but no curl, runs `python_command` (PYTHON_CLIENT). Both print the body, then a token followed by
the status, the time and the headers, and exit with curl's exit codes, so `parse_client_output`
reads either.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

from ..base import HttpResult
from .layout import MESH_NAMESPACE

# curl's exit codes (curl(1), "EXIT CODES") for the ways a request gets no HTTP answer at all.
CURL_ERRORS: Mapping[int, str] = {
    6: "could not resolve host",
    7: "connection refused",
    28: "timed out",
    52: "empty reply from server",
    56: "connection reset",
}

# The same request as the curl command below, for workloads that have Python but no curl (the
# Bookinfo images). It prints what curl's -w prints and exits with curl's codes.
PYTHON_CLIENT = r"""
import http.client, json, socket, sys, time, urllib.parse
url, method, timeout, token, headers = sys.argv[1:6]
parts = urllib.parse.urlsplit(url)
path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
start, status, body, found, code = time.monotonic(), 0, b"", {}, 0
connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=float(timeout))
try:
    connection.request(method, path, headers=json.loads(headers))
    response = connection.getresponse()
    status = response.status
    for name, value in response.getheaders():
        found.setdefault(name.lower(), []).append(value)
    body = response.read()
except http.client.RemoteDisconnected:
    code = 52
except ConnectionRefusedError:
    code = 7
except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
    code = 56
except TimeoutError:
    code = 28
except socket.gaierror:
    code = 6
except OSError as error:
    code = 1
    print(error, file=sys.stderr)
if code:
    status, body, found = 0, b"", {}
tail = "\n%s%03d %.6f %s" % (token, status, time.monotonic() - start, json.dumps(found))
sys.stdout.buffer.write(body + tail.encode())
sys.exit(code)
"""


# A client command line: (url, method, headers, timeout, token) -> argv.
ClientCommand = Callable[[str, str, Mapping[str, str] | None, float, str], list[str]]


def client_token() -> str:
    """A marker that cannot occur in a response body by chance: it separates body from -w output."""
    return f"@@istiolab-{secrets.token_hex(8)}@@"


def curl_command(
    url: str, method: str, headers: Mapping[str, str] | None, timeout: float, token: str
) -> list[str]:
    """The curl command line for one request; -w appends status, time and headers after `token`."""
    command = ["curl", "-sS", "--max-time", f"{timeout:g}", "-o", "-"]
    if method == "HEAD":
        command.append("-I")
    elif method != "GET":
        command += ["-X", method]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += ["-w", f"\\n{token}%{{http_code}} %{{time_total}} %{{header_json}}", url]
    return command


def python_command(
    url: str, method: str, headers: Mapping[str, str] | None, timeout: float, token: str
) -> list[str]:
    return [
        "python3",
        "-c",
        PYTHON_CLIENT,
        url,
        method,
        f"{timeout:g}",
        token,
        json.dumps(dict(headers or {})),
    ]


_EXIT_CODE = re.compile(r"command terminated with exit code (\d+)")


def remote_exit_code(returncode: int, stderr: str) -> int | None:
    """The exit code of the command `kubectl exec` ran, or None when kubectl itself failed."""
    if returncode == 0:
        return 0
    match = _EXIT_CODE.search(stderr)
    return int(match.group(1)) if match else None


def _header_map(text: str) -> dict[str, str]:
    """curl's %{header_json}: {"name": ["value", ...]} -> {"name": "value, ..."}."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {
        str(name).lower(): ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        for name, value in found.items()
    }


def parse_client_output(stdout: str, exit_code: int, stderr: str, token: str) -> HttpResult:
    """One HttpResult from the client's output: the body, then `token`, status, seconds, headers.

    A non-zero exit code means no complete HTTP answer: status None, with curl's exit code turned
    into words ("connection reset" for 56, "connection refused" for 7, "timed out" for 28).
    """
    body, found, tail = stdout.rpartition(f"\n{token}")
    if not found:
        body, tail = "", ""
    status_text, _, rest = tail.partition(" ")
    seconds_text, _, headers_text = rest.partition(" ")
    try:
        seconds = float(seconds_text)
    except ValueError:
        seconds = 0.0
    status = int(status_text) if status_text.isdigit() else 0
    if exit_code != 0 or status == 0:
        reason = CURL_ERRORS.get(exit_code)
        if reason is None:
            lines = [line.strip() for line in stderr.splitlines() if line.strip()]
            reason = next(
                (line for line in lines if not _EXIT_CODE.search(line)),
                f"the client exited with code {exit_code}" if exit_code else "no HTTP status",
            )
        return HttpResult(status=None, seconds=seconds, error=reason)
    return HttpResult(status=status, body=body, headers=_header_map(headers_text), seconds=seconds)


def qualify_url(url: str, namespace: str = MESH_NAMESPACE) -> str:
    """Name a bare service host with its namespace, for a client in another namespace.

    "http://reviews:9080/x" -> "http://reviews.default:9080/x"; hosts with a dot, IPs and
    localhost are left alone.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or "." in host or ":" in host or host == "localhost":
        return url
    netloc = f"{host}.{namespace}" + (f":{parts.port}" if parts.port else "")
    if "@" in parts.netloc:
        netloc = parts.netloc.rpartition("@")[0] + "@" + netloc
    return urlunsplit(parts._replace(netloc=netloc))
