"""The network path of a pod without a sidecar, for `istiolab exec --outside-mesh`.

A pod outside the mesh reaches a Service with nothing in between that speaks HTTP: cluster DNS
gives it the Service's address, and kube-proxy's iptables rules send its TCP connection to one of
the Service's pods. Whatever that pod's sidecar does to the connection, the client sees: under
STRICT mTLS the sidecar resets a plaintext connection, and curl reports
"(56) Recv failure: Connection reset by peer".

A command on this machine cannot resolve `productpage` by itself, so `exec` gives it this small
HTTP proxy (HTTP_PROXY), which stands in for DNS and kube-proxy for the command's lifetime. It
reads a request's first line and headers, picks one of the Service's pods at random as kube-proxy
does, sends the request on in origin form, and from then on only copies bytes. When the pod
resets the connection, the proxy resets the command's connection too, so the command sees what a
pod without a sidecar would see.
"""

from __future__ import annotations

import select
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

IDLE_TIMEOUT_S = 60.0  # a request (or an answer) that stalls this long is given up
MAX_HEAD = 64 * 1024  # request line and headers
_HOP_BY_HOP = {b"connection", b"proxy-connection", b"keep-alive"}


class NoEndpoint(Exception):
    """The host names no Service (or one without pods): what the command is told instead."""


Resolve = Callable[[str, int], tuple[str, int]]  # (host, port) -> the pod's (address, port)


class PlainClientProxy:
    """An HTTP proxy on 127.0.0.1 that connects to pods as a pod without a sidecar does.

    Use it as a context manager: `with PlainClientProxy(resolve) as proxy: ... proxy.url`.
    """

    def __init__(self, resolve: Resolve) -> None:
        self._server = _Server(("127.0.0.1", 0), _Connection)
        self._server.resolve = resolve
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> PlainClientProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    resolve: Resolve

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection the command or the pod dropped half-way is the command's business (it
        # sees the error); only a bug deserves socketserver's traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Connection(socketserver.BaseRequestHandler):
    server: _Server
    request: socket.socket

    def handle(self) -> None:
        self.request.settimeout(IDLE_TIMEOUT_S)
        head, body = _read_head(self.request)
        if head is None:
            return
        request_line, _, headers = head.partition(b"\r\n")
        try:
            method, target, version = request_line.decode("latin-1").split(" ", 2)
        except ValueError:
            return self._answer(400, "not an HTTP request")
        if method == "CONNECT":
            return self._answer(
                501, "exec --outside-mesh carries plain HTTP only: use http:// URLs"
            )
        parts = urlsplit(target)
        if not parts.hostname:
            return self._answer(400, f"use an absolute URL (http://host:port/path): {target}")
        try:
            address = self.server.resolve(parts.hostname, parts.port or 80)
        except NoEndpoint as error:
            return self._answer(502, str(error))
        try:
            upstream = socket.create_connection(address, timeout=IDLE_TIMEOUT_S)
        except OSError:
            return _reset(self.request)  # refused: the command sees its connection fail
        with upstream:
            origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            upstream.sendall(
                f"{method} {origin} {version}\r\n".encode("latin-1")
                + _one_request_only(headers)
                + body
            )
            _relay(self.request, upstream)

    def _answer(self, status: int, message: str) -> None:
        """An answer of the proxy's own, for what a pod would have failed at before connecting
        (a name that does not resolve, say)."""
        body = f"istiolab exec --outside-mesh: {message}\n".encode()
        self.request.sendall(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


_REASONS = {400: "Bad Request", 501: "Not Implemented", 502: "Bad Gateway"}


def _read_head(client: socket.socket) -> tuple[bytes | None, bytes]:
    """The request line and headers, and whatever of the body came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None, b""
        chunk = client.recv(16384)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _one_request_only(headers: bytes) -> bytes:
    """The headers as the client sent them, asking the pod to close the connection after its
    answer: the proxy then never has to find where one request ends and the next begins."""
    kept = [
        line
        for line in headers.split(b"\r\n")
        if line and line.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP
    ]
    return b"".join(line + b"\r\n" for line in kept) + b"Connection: close\r\n\r\n"


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until the pod closes; pass a reset on as a reset."""
    sockets: list[Any] = [client, upstream]
    while True:
        readable, _, _ = select.select(sockets, [], [], IDLE_TIMEOUT_S)
        if not readable:
            return  # idle too long: give up, as a client's timeout would
        for source in readable:
            destination = upstream if source is client else client
            try:
                data = source.recv(65536)
            except ConnectionResetError:
                if source is upstream:
                    _reset(client)
                return
            if data:
                destination.sendall(data)
            elif source is upstream:
                return  # the pod has answered and closed: so does the proxy
            else:
                upstream.shutdown(socket.SHUT_WR)  # the client has sent everything
                sockets = [upstream]


def _reset(connection: socket.socket) -> None:
    """Close with a TCP reset rather than a clean close (SO_LINGER with a zero timeout)."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
