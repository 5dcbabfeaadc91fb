"""The path `istiolab exec --outside-mesh` gives a command: DNS and kube-proxy, as one small proxy.

Real sockets on 127.0.0.1: a recording app stands in for a pod, a raw socket server for a STRICT
sidecar that resets plaintext connections, and curl (when installed) for the learner's command.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator

import pytest

from istiolab.sandbox.plain_proxy import NoEndpoint, PlainClientProxy
from live import HOST, Reply, Upstream, closed_port


class Resetter:
    """A server that reads the first bytes of each connection, then resets it, as a STRICT
    sidecar's inbound listener does to a plaintext client."""

    def __init__(self) -> None:
        self.socket = socket.create_server((HOST, 0))
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return  # closed
            connection.recv(1)  # leave the rest unread, as Envoy's TLS inspector does
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def app() -> Iterator[Upstream]:
    pod = Upstream(reply=Reply(body="from the pod"))
    yield pod
    pod.close()


@pytest.fixture
def proxy(app: Upstream) -> Iterator[PlainClientProxy]:
    """The proxy, resolving `productpage` to the app, `strict` to a pod that resets plaintext
    connections and `closed` to a port nothing listens on."""
    resetter = Resetter()
    ports = {"productpage": app.port, "strict": resetter.port, "closed": closed_port()}

    def resolve(host: str, port: int) -> tuple[str, int]:
        if host not in ports or port != 9080:
            raise NoEndpoint(f"could not resolve host {host}")
        return HOST, ports[host]

    try:
        with PlainClientProxy(resolve) as running:
            yield running
    finally:
        resetter.close()


def through(
    proxy: PlainClientProxy, url: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, str]:
    port = int(proxy.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request(method, url, body=body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_request_reaches_the_pod_in_origin_form(proxy: PlainClientProxy, app: Upstream) -> None:
    assert through(proxy, "http://productpage:9080/productpage?u=1") == (200, "from the pod")

    [seen] = app.requests
    assert seen.path == "/productpage?u=1"
    assert seen.headers["host"] == "productpage:9080"
    assert seen.headers["connection"] == "close"  # one request per connection


def test_a_body_is_passed_on(proxy: PlainClientProxy, app: Upstream) -> None:
    assert through(proxy, "http://productpage:9080/login", "POST", b"username=jason")[0] == 200
    assert app.requests[-1].body == b"username=jason"


def test_a_reset_from_the_pod_reaches_the_client_as_a_reset(proxy: PlainClientProxy) -> None:
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        through(proxy, "http://strict:9080/productpage")


def test_a_refused_connection_reaches_the_client_as_a_reset(proxy: PlainClientProxy) -> None:
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        through(proxy, "http://closed:9080/")


def test_a_name_that_is_no_service_gets_the_proxys_answer(proxy: PlainClientProxy) -> None:
    status, body = through(proxy, "http://nowhere:9080/")
    assert status == 502
    assert "could not resolve host nowhere" in body


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_sees_what_istio_s_mtls_migration_task_shows(proxy: PlainClientProxy) -> None:
    def curl(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", proxy.url, url],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    accepted = curl("http://productpage:9080/productpage")
    assert (accepted.returncode, accepted.stdout) == (0, "200")
    refused = curl("http://strict:9080/productpage")
    assert (refused.returncode, refused.stdout) == (56, "000")  # "Connection reset by peer"
