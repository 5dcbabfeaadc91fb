"""Calls from one Bookinfo service to another.

Every call opens a fresh connection (no pooling, as in Istio's productpage, so that a learner can
watch load spread over several versions of a service) and has a timeout, which applies to
connecting and to each wait for data. A call that gets no answer (refused, reset, timed out)
returns None: the caller decides what the page shows then.

This uses the standard library's http.client rather than `requests`: a page view makes three
calls, and `requests` spends about a millisecond of CPU setting up each one, more than the rest of
the call. Like `requests`, it honours HTTP_PROXY/HTTPS_PROXY and NO_PROXY, which is how the sandbox
mesh points an app at its sidecar.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.request
from dataclasses import dataclass
from email.message import Message
from urllib.parse import SplitResult, urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: Message
    content: bytes

    def json(self) -> object:
        """The decoded JSON body; ValueError if it is not JSON."""
        return json.loads(self.content)


class CallError(Exception):
    """No answer came back; the message says why (e.g. "Connection refused")."""


def get(url: str, headers: dict[str, str], timeout: float, accept_json: bool = False) -> Response:
    """GET `url` on a new connection. Raises CallError when there is no answer."""
    if accept_json:
        headers = {**headers, "Accept": "application/json"}
    parts = urlsplit(url)
    connection, target = _connect(parts, timeout)
    try:
        connection.request("GET", target, headers=headers)
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # ValueError: a header value that cannot be sent (http.client refuses CR/LF).
        raise CallError(_reason(exc)) from None
    finally:
        connection.close()


def try_get(
    url: str, headers: dict[str, str], timeout: float, accept_json: bool = False
) -> Response | None:
    """Like get(), but None when there is no answer (and the reason goes to the log)."""
    try:
        return get(url, headers, timeout, accept_json)
    except CallError as exc:
        log.warning("GET %s failed: %s", url, exc)
        return None


def json_body(response: Response | None) -> object | None:
    """The decoded JSON body of a response, or None when there is none to decode."""
    if response is None:
        return None
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _connect(parts: SplitResult, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for the URL, through a proxy if the environment names one for it."""
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    proxy = _proxy_for(parts.scheme, host)
    connection_type = http.client.HTTPSConnection if https else http.client.HTTPConnection
    if proxy is None:
        return connection_type(host, port, timeout=timeout), target
    proxy_parts = urlsplit(proxy)
    proxy_host, proxy_port = proxy_parts.hostname or "", proxy_parts.port or 80
    if https:
        # Through the proxy with CONNECT; TLS is still end to end.
        connection = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=timeout)
        connection.set_tunnel(host, port)
        return connection, target
    # Plain HTTP through a proxy: the request line carries the whole URL.
    return http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout), parts.geturl()


def _proxy_for(scheme: str, host: str) -> str | None:
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _reason(exc: BaseException) -> str:
    """A short reason: "Connection refused", "timed out", "Name or service not known"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
